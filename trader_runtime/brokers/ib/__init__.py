"""Interactive Brokers adapter; only this package imports ib_async."""
