"""What backtest and live share between a decision and a fill: the book and its ledger, parent
and child orders, the pre-trade risk checks and the ``Trader`` that runs them bar by bar."""
