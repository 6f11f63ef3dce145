"""The runtime's typed errors: callers catch these, never bare ``Exception``."""

from __future__ import annotations


class RoboTraderError(Exception):
    """Base of every error raised on purpose by robo-trader."""


class ConfigError(RoboTraderError):
    """A setting is missing, malformed or contradicts another one."""


class DataSourceError(RoboTraderError):
    """A market data source cannot serve the request."""


class UnknownSymbolError(DataSourceError):
    """The source has no data for the symbol."""


class SourceUnavailableError(DataSourceError):
    """The source exists by name but cannot be used in this installation."""


class InputSchemaError(DataSourceError):
    """Input data lacks required columns or cannot be read as bars at all."""


class EmptyInputError(InputSchemaError):
    """Input data holds no rows."""


class StorageError(RoboTraderError):
    """The Parquet lake or the DuckDB warehouse refused an operation."""
