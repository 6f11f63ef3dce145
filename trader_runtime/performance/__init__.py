"""Backtest analysis without plotting: daily returns (``returns``), performance metrics and
Sharpe-ratio statistics (``metrics``), P&L attribution (``attribution``).

Import from the modules: this package is also imported by ``settings`` (promotion gates), so it
loads nothing here.
"""
