"""What a run needs from a source, whichever it is: an InfluxDB server or line-protocol files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.model import FieldInfo, SeriesBatch, Tags
from data_platform.lib.timing.window import Window


class InfluxReader(Protocol):
    """What a run needs from a source: an InfluxDB server or line-protocol files."""

    def list_measurements(self) -> list[str]: ...
    def list_field_keys(self, measurement: str) -> list[FieldInfo]: ...
    def list_series(self, measurement: str) -> list[Tags]: ...
    def stream_window(
        self,
        measurement: str,
        window: Window,
        *,
        fields: Sequence[str] | None = None,
        tag_filters: Mapping[str, Sequence[str]] | TagFilter | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[SeriesBatch]: ...
    def window_stats(self, measurement: str, window: Window) -> Mapping[str, Any]: ...
