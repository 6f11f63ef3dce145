"""Partitions shared by the per-symbol assets."""

from __future__ import annotations

import dagster as dg

SYMBOL_PARTITIONS_NAME = "symbols"

# Dynamic: a user adds a symbol in the UI, with the universe sensor (ROBO_SYMBOLS) or from code,
# without changing definitions.
symbol_partitions = dg.DynamicPartitionsDefinition(name=SYMBOL_PARTITIONS_NAME)
