"""Rollups of raw time series: TimescaleDB continuous aggregates or PostgreSQL rollup tables."""

from data_platform.lib.timescale.component import TimescaleAggregateComponent

__all__ = ["TimescaleAggregateComponent"]
