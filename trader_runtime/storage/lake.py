"""The Parquet lake: one file per (dataset, timeframe, symbol), replaced atomically.

Layout: ``<root>/<dataset>/<timeframe>/<symbol>/data.parquet``. A write goes to a temporary file in
the same folder, is flushed to disk, then renamed over the old file, so a reader sees the old
partition or the new one and never half of either. Rewriting a partition replaces it whole, so
re-materializing never duplicates rows.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from trader_runtime.errors import ConfigError, StorageError

FILE_NAME = "data.parquet"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is safe as a path segment (letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{kind} {value!r} is not a valid name: use letters, digits, '.', '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True, slots=True)
class ParquetLake:
    """A folder of Parquet partitions. ``root`` is created on first write."""

    root: Path

    def path(self, dataset: str, timeframe: str, symbol: str) -> Path:
        return (
            self.root
            / check_name("dataset", dataset)
            / check_name("timeframe", timeframe)
            / check_name("symbol", symbol)
            / FILE_NAME
        )

    def glob(self, dataset: str, timeframe: str) -> str:
        """A glob over every symbol's file of one dataset and timeframe (for DuckDB and Polars)."""
        return str(
            self.root / check_name("dataset", dataset) / check_name("timeframe", timeframe)
        ) + (f"/*/{FILE_NAME}")

    def write(self, dataset: str, timeframe: str, symbol: str, frame: pl.DataFrame) -> Path:
        """Replace the partition with ``frame``; returns its path."""
        target = self.path(dataset, timeframe, symbol)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{FILE_NAME}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as fh:
                frame.write_parquet(fh, compression="zstd", statistics=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"could not write {target}: {exc}") from exc
            raise
        return target

    def exists(self, dataset: str, timeframe: str, symbol: str) -> bool:
        return self.path(dataset, timeframe, symbol).is_file()

    def read(self, dataset: str, timeframe: str, symbol: str) -> pl.DataFrame:
        path = self.path(dataset, timeframe, symbol)
        if not path.is_file():
            raise StorageError(
                f"no {dataset} {timeframe} partition for {symbol} at {path}; materialize it first"
            )
        return pl.read_parquet(path)

    def delete(self, dataset: str, timeframe: str, symbol: str) -> bool:
        """Remove a partition; True if it existed."""
        path = self.path(dataset, timeframe, symbol)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def timeframes(self, dataset: str, symbol: str) -> list[str]:
        """Timeframes for which ``symbol`` has a partition of ``dataset``."""
        base = self.root / check_name("dataset", dataset)
        if not base.is_dir():
            return []
        return sorted(
            tf.name
            for tf in base.iterdir()
            if (tf / check_name("symbol", symbol) / FILE_NAME).is_file()
        )

    def symbols(self, dataset: str, timeframe: str) -> list[str]:
        base = self.root / check_name("dataset", dataset) / check_name("timeframe", timeframe)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / FILE_NAME).is_file())

    def scan(self, dataset: str, timeframe: str) -> pl.LazyFrame:
        """All symbols of one dataset and timeframe as one lazy frame."""
        if not self.symbols(dataset, timeframe):
            raise StorageError(f"no {dataset} {timeframe} partitions under {self.root}")
        return pl.scan_parquet(self.glob(dataset, timeframe))


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
