"""What a run needs from a source, whichever it is: an InfluxDB server or line-protocol files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from data_platform.lib.influx.reader.model import FieldInfo, SeriesBatch, SeriesColumns, Tags
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.timing.window import Window


class InfluxReader(Protocol):
    """What a run needs from a source: an InfluxDB server or line-protocol files.

    `list_series` is None where the source cannot list series (InfluxDB 3): series then come
    from the data (`reader.discovery`).
    """

    def list_measurements(self) -> list[str]: ...
    def list_field_keys(self, measurement: str) -> list[FieldInfo]: ...
    def list_series(self, measurement: str) -> list[Tags] | None: ...
    def stream_window(
        self, query: SeriesQuery, *, chunk_size: int | None = None
    ) -> Iterator[SeriesBatch]: ...
    def window_stats(self, measurement: str, window: Window) -> Mapping[str, Any]: ...


def window_batches(
    reader: InfluxReader, query: SeriesQuery
) -> Iterator[SeriesBatch | SeriesColumns]:
    """The window's batches for a writer that takes columns: decoded straight into columns
    where the reader can (`stream_window_columns`: InfluxDB's msgpack), else its rows."""
    columns = getattr(reader, "stream_window_columns", None)
    if columns is not None:
        return columns(query)
    return reader.stream_window(query)
