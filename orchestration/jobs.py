"""Jobs: named selections of assets that run together."""

from __future__ import annotations

import dagster as dg

from robo_assets.bars_assets import bars, raw_bars

market_data_job = dg.define_asset_job(
    name="market_data_job",
    selection=dg.AssetSelection.assets(raw_bars, bars),
    description="Ingest, validate, quarantine and resample one symbol's bars.",
)

JOBS = (market_data_job,)
