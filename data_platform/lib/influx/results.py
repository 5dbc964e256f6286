"""What an ingest run reads from and what it wrote: handed to the checks and the metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from data_platform.lib.historian.window import WindowWrite
from data_platform.lib.influx.plan import MeasurementSelection
from data_platform.lib.influx.reader.model import FieldInfo
from data_platform.lib.timing.window import Window


@dataclass
class MeasurementRun:
    """What one run did for one measurement, across its windows."""

    measurement: MeasurementSelection
    writes: list[WindowWrite] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(w.rows for w in self.writes)

    @property
    def newest_ns(self) -> int | None:
        values = [w.newest_ns for w in self.writes if w.newest_ns is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class AssetRun:
    """What one run wrote for one asset: its measurements' windows and the fields' types."""

    selection: MeasurementSelection
    runs: Sequence[MeasurementRun]
    types: Mapping[str, list[FieldInfo]]
    """Field keys (with InfluxDB types) per measurement, as the source reported them."""
    window: Window
    """The run's whole range: its first window's start to its last window's end."""
    lag_s: float | None
    """Seconds from the newest point written to now; None when nothing was written."""

    @property
    def collisions(self) -> int:
        return sum(w.collisions for r in self.runs for w in r.writes)


def field_types(types: Mapping[str, list[FieldInfo]]) -> dict[tuple[str, str], str]:
    """(measurement, field) -> its InfluxDB type(s), comma-separated when shards disagree."""
    out: dict[tuple[str, str], set[str]] = {}
    for measurement, infos in types.items():
        for info in infos:
            out.setdefault((measurement, info.field), set()).add(info.influx_type)
    return {key: ",".join(sorted(kinds)) for key, kinds in out.items()}
