"""Brokers behind one interface (``base.Broker``): ``paper`` (the backtest's fill and cost model)
and ``ib`` (Interactive Brokers through ib_async; the only package that imports it)."""
