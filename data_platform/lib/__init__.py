"""Reusable components of the platform, referenced from YAML as `data_platform.lib.<Name>`.

The components are imported on first use, so that the Dagster-free packages below
(`data_platform.lib.influx.reader`, `data_platform.lib.timing`) import without Dagster.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from data_platform.lib.influx.component import InfluxIngestComponent
    from data_platform.lib.timescale.component import TimescaleAggregateComponent

_COMPONENTS = {
    "InfluxIngestComponent": "data_platform.lib.influx.component",
    "TimescaleAggregateComponent": "data_platform.lib.timescale.component",
}

__all__ = ["InfluxIngestComponent", "TimescaleAggregateComponent"]


def __getattr__(name: str) -> Any:
    module = _COMPONENTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_COMPONENTS])
