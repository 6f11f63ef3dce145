"""The DuckDB warehouse: the quarantine table, and SQL over the Parquet lake.

DuckDB lets one process write a database file at a time, and no other process open it meanwhile.
Writers here therefore hold a connection only for one short transaction and retry while another
process holds the lock (``lock_timeout_s``). Queries over the lake use an in-memory DuckDB with
views, so reading bars never locks the warehouse file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from trader_runtime.errors import StorageError
from trader_runtime.storage.lake import ParquetLake, check_name

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    dataset     VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    symbol      VARCHAR NOT NULL,
    timeframe   VARCHAR NOT NULL,
    ts          TIMESTAMPTZ,
    reason      VARCHAR NOT NULL,
    row_json    VARCHAR NOT NULL,
    run_id      VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL
)
"""
QUARANTINE_COLUMNS = (
    "dataset",
    "source",
    "symbol",
    "timeframe",
    "ts",
    "reason",
    "row_json",
    "run_id",
    "recorded_at",
)


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A DuckDB database file holding transactional tables (for now: ``quarantine``)."""

    path: Path
    lock_timeout_s: float = 60.0

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, retried while another process holds the file lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and not self.path.exists():
            with self.connect():
                pass
        deadline = time.monotonic() + self.lock_timeout_s
        delay_s = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StorageError(f"could not open {self.path}: {exc}") from exc
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 0.5)
        try:
            if not read_only:
                con.execute(QUARANTINE_DDL)
            yield con
        finally:
            con.close()

    def replace_quarantine(
        self,
        *,
        dataset: str,
        source: str,
        symbol: str,
        timeframe: str,
        rows: pl.DataFrame,
        reason_column: str = "reason",
        run_id: str | None = None,
    ) -> int:
        """Replace the quarantined rows of one partition with ``rows``; returns how many were stored.

        Each row keeps its values as JSON (``row_json``) next to its ``ts`` and ``reason``.
        """
        check_name("dataset", dataset)
        check_name("symbol", symbol)
        now = datetime.now(UTC)
        values = rows.drop(reason_column)
        records = pl.DataFrame(
            {
                "dataset": [dataset] * rows.height,
                "source": [source] * rows.height,
                "symbol": [symbol] * rows.height,
                "timeframe": [timeframe] * rows.height,
                "ts": rows["ts"] if "ts" in rows.columns else [None] * rows.height,
                "reason": rows[reason_column],
                "row_json": [json.dumps(r, default=str) for r in values.to_dicts()],
                "run_id": [run_id] * rows.height,
                "recorded_at": [now] * rows.height,
            },
            schema_overrides={"ts": pl.Datetime("us", "UTC"), "run_id": pl.String},
        )
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "DELETE FROM quarantine WHERE dataset = ? AND symbol = ? AND timeframe = ?",
                [dataset, symbol, timeframe],
            )
            if records.height:
                con.register("incoming", records)
                con.execute(
                    f"INSERT INTO quarantine SELECT {', '.join(QUARANTINE_COLUMNS)} FROM incoming"
                )
                con.unregister("incoming")
            con.execute("COMMIT")
        return records.height

    def quarantine(self, *, dataset: str | None = None, symbol: str | None = None) -> pl.DataFrame:
        """Quarantined rows, optionally of one dataset and/or symbol, oldest first."""
        clauses, params = [], []
        if dataset is not None:
            clauses.append("dataset = ?")
            params.append(dataset)
        if symbol is not None:
            clauses.append("symbol = ?")
            params.append(symbol)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.connect(read_only=True) as con:
            has_table = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'quarantine'"
            ).fetchall()
            if has_table[0][0] == 0:
                return pl.DataFrame(schema={c: pl.String for c in QUARANTINE_COLUMNS})
            found: pl.DataFrame = con.sql(
                f"SELECT * FROM quarantine {where} ORDER BY symbol, timeframe, ts", params=params
            ).pl()
            return found


def query_lake(
    lake: ParquetLake, sql: str, *, datasets: tuple[str, ...] = ("bars",)
) -> pl.DataFrame:
    """Run ``sql`` on an in-memory DuckDB where ``<dataset>_<timeframe>`` views read the lake.

    For example ``SELECT symbol, count(*) FROM bars_1d GROUP BY symbol``.
    """
    con = duckdb.connect()
    try:
        for dataset in datasets:
            base = lake.root / dataset
            if not base.is_dir():
                continue
            for tf_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                if not any(tf_dir.glob("*/data.parquet")):
                    continue
                view = f"{dataset}_{tf_dir.name}"
                glob = lake.glob(dataset, tf_dir.name).replace("'", "''")
                con.execute(f"CREATE VIEW \"{view}\" AS SELECT * FROM read_parquet('{glob}')")
        result: pl.DataFrame = con.sql(sql).pl()
        return result
    except duckdb.Error as exc:
        raise StorageError(f"query over {lake.root} failed: {exc}") from exc
    finally:
        con.close()
