"""Reusable components of the platform, referenced from YAML as `data_platform.lib.<Name>`."""

from data_platform.lib.influx.component import InfluxIngestComponent
from data_platform.lib.timescale import TimescaleAggregateComponent

__all__ = ["InfluxIngestComponent", "TimescaleAggregateComponent"]
