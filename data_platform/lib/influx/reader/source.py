"""A set of line-protocol files read like an InfluxDB server: by measurement and window."""

from __future__ import annotations

import glob
import heapq
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_platform.lib.influx.reader import files
from data_platform.lib.influx.reader.files import OnError, ScanStats, check_on_error
from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.line_protocol import Point, parse_precision
from data_platform.lib.influx.reader.model import (
    FieldInfo,
    FieldStats,
    FieldValue,
    SeriesBatch,
    Tags,
)
from data_platform.lib.influx.reader.parser import LineParser
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.timing.window import Window


@dataclass(slots=True)
class MeasurementIndex:
    """What one file holds of one measurement."""

    first_ns: int
    last_ns: int
    points: int = 0
    field_types: dict[str, set[str]] = field(default_factory=dict)
    series: set[Tags] = field(default_factory=set)


@dataclass(slots=True)
class FileIndex:
    """The schema and time range of one file, valid while its size and mtime are unchanged."""

    path: Path
    size: int
    mtime_ns: int
    measurements: dict[str, MeasurementIndex]
    stats: ScanStats


INDEX_CACHE_LIMIT = 4096
"""File indexes a source keeps (by path, size and mtime) before it forgets the oldest."""
_INFLUX_TYPES: dict[type | str, str] = {
    float: "float",
    int: "integer",
    bool: "boolean",
    str: "string",
    "unsigned": "unsigned",
}


def _scan_file(
    path: Path, status: os.stat_result, points: Iterator[Point], stats: ScanStats
) -> FileIndex:
    """The index of one file from all its points (read with `stats`)."""
    measurements: dict[str, MeasurementIndex] = {}
    typed_fields: set[tuple[str, str, type | str]] = set()
    for point in points:
        name = point.measurement
        time_ns = point.time_ns
        assert time_ns is not None
        entry = measurements.get(name)
        if entry is None:
            entry = measurements[name] = MeasurementIndex(time_ns, time_ns)
        elif time_ns < entry.first_ns:
            entry.first_ns = time_ns
        elif time_ns > entry.last_ns:
            entry.last_ns = time_ns
        entry.points += 1
        entry.series.add(point.tags)
        if point.unsigned:
            for key, value in point.fields.items():
                kind = "unsigned" if key in point.unsigned else value.__class__
                typed_fields.add((name, key, kind))
        else:
            for key, value in point.fields.items():
                typed_fields.add((name, key, value.__class__))
    for name, key, kind in typed_fields:
        measurements[name].field_types.setdefault(key, set()).add(_INFLUX_TYPES[kind])

    return FileIndex(path, status.st_size, status.st_mtime_ns, measurements, stats)


class _SeriesBuffer:
    """The earliest `capacity` distinct timestamps of one series above a floor, fields merged."""

    __slots__ = ("capacity", "floor", "heap", "overflowed", "rows")

    def __init__(self, capacity: int, floor: int | None) -> None:
        self.capacity = capacity
        self.floor = floor  # timestamps at or below it went out in an earlier pass
        self.rows: dict[int, dict[str, FieldValue]] = {}
        self.heap: list[int] = []  # negated timestamps: the latest kept one on top
        self.overflowed = False

    def add(self, time_ns: int, fields: dict[str, FieldValue]) -> None:
        """Take a point's fields (the dict becomes the buffer's, and may be updated in place)."""
        rows = self.rows
        row = rows.get(time_ns)
        if row is not None:
            row.update(fields)  # the same point again: later values win per field
            return
        if len(rows) < self.capacity:
            rows[time_ns] = fields
            heapq.heappush(self.heap, -time_ns)
            return
        self.overflowed = True
        latest = -self.heap[0]
        if time_ns < latest:
            heapq.heapreplace(self.heap, -time_ns)
            del rows[latest]
            rows[time_ns] = fields


class LineProtocolSource:
    """Line protocol files (plain or gzip) read like an InfluxDB server: by measurement and window.

    `paths` is a path, a glob pattern (`**` recurses) or a list of them; they are expanded on
    every call, so files added later are picked up. Files are read in that order (glob matches
    sorted), which decides which of two writes of the same point wins: the later one, per field.
    Each file is scanned once for its schema and time range per measurement; the index is
    cached by (path, size, mtime), so windows outside a file's range never open it again.
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        precision: str = "ns",
        on_error: OnError = "fail",
        default_time_ns: int | None = None,
    ) -> None:
        entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.patterns: tuple[str, ...] = tuple(os.fspath(p) for p in entries)
        if not self.patterns:
            raise ValueError("LineProtocolSource needs at least one path or glob pattern")
        self.precision = precision
        self.on_error: OnError = check_on_error(on_error)
        self.default_time_ns = default_time_ns
        self._parser = LineParser(parse_precision(precision))
        # File indexes by (resolved path, size, mtime): a window outside a file's time range
        # never opens it again, and a changed file is scanned again.
        self._indexes: OrderedDict[tuple[str, int, int], FileIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LineProtocolSource({list(self.patterns)!r}, precision={self.precision!r})"

    # -- files and their index ---------------------------------------------------------------------

    def paths(self) -> list[Path]:
        """The files the patterns match now, in reading order; a pattern matching none is an error."""
        found: dict[Path, None] = {}
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
                if not matches:
                    raise FileNotFoundError(f"no line protocol files match {pattern!r}")
                found.update((Path(p), None) for p in matches)
            elif os.path.isfile(pattern):
                found[Path(pattern)] = None
            else:
                raise FileNotFoundError(f"line protocol file {pattern!r} does not exist")
        return list(found)

    def files(self) -> list[FileIndex]:
        """The index of every file: measurements, time ranges and what the scan skipped."""
        return [self._index(path) for path in self.paths()]

    def _index(self, path: Path) -> FileIndex:
        """Scan a file once for its measurements, fields, tag keys and time ranges (cached)."""
        status = path.stat()
        key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
        with self._lock:
            cached = self._indexes.get(key)
            if cached is not None:
                self._indexes.move_to_end(key)
                return cached
        stats = ScanStats()
        index = _scan_file(path, status, self._read(path, stats=stats), stats)
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > INDEX_CACHE_LIMIT:
                self._indexes.popitem(last=False)
        return index

    def _read(
        self, path: Path, *, stats: ScanStats | None, measurement: str | None = None
    ) -> Iterator[Point]:
        return files.read_points(
            path,
            parser=self._parser,
            default_time_ns=self.default_time_ns,
            on_error=self.on_error,
            stats=stats,
            measurement=measurement,
        )

    def _measurement_indexes(self, measurement: str) -> list[tuple[FileIndex, MeasurementIndex]]:
        return [
            (index, index.measurements[measurement])
            for index in self.files()
            if measurement in index.measurements
        ]

    # -- schema ------------------------------------------------------------------------------------

    def list_measurements(self) -> list[str]:
        return sorted({name for index in self.files() for name in index.measurements})

    def list_field_keys(self, measurement: str) -> list[FieldInfo]:
        """One FieldInfo per field and type (a field written with two types in the files has two)."""
        seen: set[tuple[str, str]] = set()
        for _, entry in self._measurement_indexes(measurement):
            for key, types in entry.field_types.items():
                seen.update((key, influx_type) for influx_type in types)
        return [FieldInfo(measurement, key, influx_type) for key, influx_type in sorted(seen)]

    def list_series(self, measurement: str) -> list[Tags]:
        """Every tag set of the measurement in the files, like InfluxDB's SHOW SERIES."""
        return sorted(
            {tags for _, entry in self._measurement_indexes(measurement) for tags in entry.series}
        )

    # -- data --------------------------------------------------------------------------------------

    def stream_window(
        self, query: SeriesQuery, *, chunk_size: int | None = None
    ) -> Iterator[SeriesBatch]:
        """Points of `query.measurement` with window.start_ns <= time < window.end_ns, per series.

        Each batch holds at most `chunk_size` rows of one series, sorted by time; a series'
        batches come in time order (other series' batches may come in between). Two writes of
        the same point (series and time) are merged, the later line winning per field.
        Columns are `fields`, or every field of the measurement in the files, sorted; rows
        without a value for any of them are left out. `tag_filters` keeps series whose tag has
        one of the listed values, as InfluxDB does (see `TagFilter`).

        Memory is bounded by `chunk_size` rows per series in the window: a series with more
        points there is read in several passes over the files, each taking the next
        `chunk_size` timestamps.
        """
        measurement, window, fields, tag_filters = (
            query.measurement,
            query.window,
            query.fields,
            query.tag_filter,
        )
        chunk_size = 10_000 if chunk_size is None else chunk_size
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        start_ns, end_ns = window.start_ns, window.end_ns
        indexes = [
            index
            for index, entry in self._measurement_indexes(measurement)
            if entry.first_ns < end_ns and entry.last_ns >= start_ns
        ]
        if not indexes:
            return
        if fields is None:
            columns = tuple(sorted({f.field for f in self.list_field_keys(measurement)}))
        else:
            columns = tuple(dict.fromkeys(fields))
        tag_filter = TagFilter.of(tag_filters)

        floors: dict[Tags, int] | None = None  # None: the first pass, open to every series
        while True:
            buffers = self._collect_pass(
                indexes, measurement, start_ns, end_ns, chunk_size, tag_filter, floors
            )
            floors = {}
            for tags in sorted(buffers):
                buffer = buffers[tags]
                rows = [
                    [time_ns, *(values.get(column) for column in columns)]
                    for time_ns, values in sorted(buffer.rows.items())
                ]
                if buffer.overflowed:
                    floors[tags] = max(buffer.rows)
                rows = [row for row in rows if any(value is not None for value in row[1:])]
                if rows:
                    yield SeriesBatch(measurement, tags, columns, rows)
            if not floors:
                return

    def _collect_pass(
        self,
        indexes: list[FileIndex],
        measurement: str,
        start_ns: int,
        end_ns: int,
        chunk_size: int,
        tag_filter: TagFilter | None,
        floors: dict[Tags, int] | None,
    ) -> dict[Tags, _SeriesBuffer]:
        """One read of the files: per series, the next `chunk_size` timestamps of the window."""
        buffers: dict[Tags, _SeriesBuffer] = {}
        if floors is not None:
            for tags, floor in floors.items():
                buffers[tags] = _SeriesBuffer(chunk_size, floor)
        kept: dict[Tags, bool] = {}
        for index in indexes:
            for point in self._read(index.path, stats=None, measurement=measurement):
                time_ns = point.time_ns
                assert time_ns is not None
                if time_ns < start_ns or time_ns >= end_ns or point.measurement != measurement:
                    continue
                tags = point.tags
                buffer = buffers.get(tags)
                if buffer is None:
                    if floors is not None:
                        continue  # this series was complete after an earlier pass
                    if tag_filter is not None:
                        keep = kept.get(tags)
                        if keep is None:
                            keep = kept[tags] = tag_filter.matches(tags)
                        if not keep:
                            continue
                    buffer = buffers[tags] = _SeriesBuffer(chunk_size, None)
                elif buffer.floor is not None and time_ns <= buffer.floor:
                    continue
                buffer.add(time_ns, point.fields)
        return buffers

    def window_stats(self, measurement: str, window: Window) -> dict[str, FieldStats]:
        """Per field with values in the window: how many (after merging duplicate points), and
        the first and last time."""
        counts: dict[str, int] = {}
        firsts: dict[str, int] = {}
        lasts: dict[str, int] = {}
        for batch in self.stream_window(SeriesQuery(measurement, window)):
            for position, column in enumerate(batch.columns, start=1):
                times = [row[0] for row in batch.rows if row[position] is not None]
                if not times:
                    continue
                first, last = times[0], times[-1]  # batches are sorted by time
                assert isinstance(first, int) and isinstance(last, int)
                counts[column] = counts.get(column, 0) + len(times)
                firsts[column] = min(firsts.get(column, first), first)
                lasts[column] = max(lasts.get(column, last), last)
        return {
            column: FieldStats(count=counts[column], first_ns=firsts[column], last_ns=lasts[column])
            for column in sorted(counts)
        }
