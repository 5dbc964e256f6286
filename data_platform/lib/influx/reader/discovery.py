"""The signals a source really has: (series, field) pairs with values, never series x fields.

A server answers one `last(*) ... GROUP BY *` per measurement over a bounded window (see
`InfluxClient.list_signals`); line-protocol files are read for it, as they are read whole
anyway. Both give the same answer for the same data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from data_platform.lib.influx.reader.model import SeriesFields, Tags
from data_platform.lib.influx.reader.protocol import InfluxReader
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.timing.window import Window

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Every time a nanosecond timestamp can hold (InfluxDB's own range).
ALL_TIME = Window(datetime(1677, 9, 22, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))


def signals_with_values(reader: InfluxReader, query: SeriesQuery) -> list[SeriesFields]:
    """Each series with values in the query's window, and the fields it has values of."""
    list_signals = getattr(reader, "list_signals", None)
    if list_signals is not None:
        return list_signals(query)
    found: dict[Tags, set[str]] = {}
    for batch in reader.stream_window(query):
        for position, name in enumerate(batch.columns, start=1):
            if any(row[position] is not None for row in batch.rows):
                found.setdefault(batch.tags, set()).add(name)
    return sorted(SeriesFields(tags, tuple(sorted(f))) for tags, f in found.items())


def lookback_window(reader: InfluxReader, measurement: str, lookback: timedelta) -> Window | None:
    """`[newest - lookback, newest]` around the measurement's newest point (None when it has
    none). Anchored at the data, not the clock: a source whose writer stopped a month ago
    still shows what it wrote last."""
    newest = getattr(reader, "newest_ns", None)
    if newest is None:
        return ALL_TIME  # files: read whole, they hold no more than what was exported
    newest_ns = newest(measurement)
    if newest_ns is None:
        return None
    end = _EPOCH + timedelta(microseconds=newest_ns // 1000 + 1)
    return Window(end - lookback, end)
