"""Read InfluxDB through the v1 `/query` API (InfluxQL), one window at a time, streamed.

InfluxDB 1.x serves this API natively, 2.x through DBRP mappings and 3.x through its
v1-compatible endpoint; the client finds out which from `/ping` (or `influx.version`) and sends
only what that generation supports (GENERATIONS.md). Responses are read chunk by chunk
(`chunked=true`) in msgpack, JSON or CSV, so memory stays flat however large a window is.

What each format can and cannot say matters for correctness:
- msgpack and JSON carry per-statement errors and `partial` flags, so a query that the server
  kills half-way (query timeout) or a stream that stops early is detected from the body.
- InfluxDB 1.x/2.x drop per-statement errors from CSV: an unknown database or a timed-out query
  gives an empty or silently shortened 200 body. CSV also loses types. A CSV read therefore takes
  the field types from `SHOW FIELD KEYS` (which also surfaces a missing database) and is checked
  against `SELECT count(*)` once the stream ends. With `format="auto"` CSV comes last.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, cast

import httpx

from data_platform.lib.influx.reader.connection import InfluxConnection
from data_platform.lib.influx.reader.errors import (
    InfluxAuthError,
    InfluxConfigError,
    InfluxDatabaseNotFound,
    InfluxError,
    InfluxQueryError,
    InfluxTransientError,
)
from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.generation import Generation
from data_platform.lib.influx.reader.influxql import (
    count_window,
    last_per_series,
    newest_point,
    parse_series_key,
    qualified_measurement,
    quote_ident,
    select_window,
    selector_window,
)
from data_platform.lib.influx.reader.model import (
    FieldInfo,
    FieldStats,
    FieldValue,
    SeriesBatch,
    SeriesColumns,
    SeriesFields,
    Tags,
    normalize_tags,
)
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.settings import Credentials, InfluxSettings, WireFormat
from data_platform.lib.influx.reader.wire import (
    CsvServerError,
    CsvTally,
    Truncated,
    UnexpectedShape,
    ValueColumns,
    column,
    csv_batches,
    documents_from_arrays,
    field_counts,
    merged,
    msgpack_column_documents,
    signals_of_last_rows,
    text_lines,
)
from data_platform.lib.timing.window import Window

# JSON before CSV: both parse at about the same speed here, but only JSON carries errors.
_AUTO_ORDER: tuple[WireFormat, ...] = ("msgpack", "json", "csv")
_AUTO_WITHOUT_MSGPACK: tuple[WireFormat, ...] = ("json", "csv")


class InfluxClient:
    """A reader for one InfluxDB database; owns an HTTP connection pool. Use as a context manager."""

    stats_beside_stream = True
    """httpx's pool serves several threads: the reconciliation may count beside a stream."""

    def __init__(
        self,
        settings: InfluxSettings,
        credentials: Credentials | None = None,
        *,
        source: str,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        stream_retries: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """`max_retries` applies to metadata queries and, unless `stream_retries` says
        otherwise, to opening a window's stream; a caller that retries whole windows itself
        passes `stream_retries=0`, so retries do not multiply."""
        self.settings = settings
        self.source = source
        self._stream_retries = max_retries if stream_retries is None else max(0, stream_retries)
        self._conn = InfluxConnection(
            settings,
            credentials or Credentials(),
            source=source,
            max_retries=max_retries,
            backoff_s=backoff_s,
            logger=logger or logging.getLogger(__name__),
        )
        self._negotiated: WireFormat | None = None
        # The field types last listed per measurement (SHOW FIELD KEYS), to read a field whose
        # type differs between shards without asking again for every window.
        self._known_types: dict[str, dict[str, frozenset[str]]] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return (
            f"InfluxClient(source={self.source!r}, url={self._conn.base_url!r}, "
            f"database={self.settings.database!r})"
        )

    @property
    def generation(self) -> Generation:
        """The server's generation: `influx.version`, else what `/ping` says (asked once)."""
        return self._conn.ensure_generation()

    @property
    def auth_scheme(self) -> str:
        """`Token`, `Bearer`, `Basic` or `none`: how requests authenticate."""
        self._conn.ensure_generation()
        return self._conn.auth_scheme

    @property
    def wire_format(self) -> WireFormat | None:
        """The format in use: the configured one, or what `auto` settled on (None before)."""
        if self.settings.format != "auto":
            return self.settings.format
        return self._negotiated

    # -- public API -------------------------------------------------------------------------------
    def ping(self) -> str:
        """The server's version (from `/ping`)."""
        return self._conn.ping().version

    def list_measurements(self) -> list[str]:
        what = "listing measurements"
        names = [
            str(value) for value in column(self._conn.metadata("SHOW MEASUREMENTS", what), "name")
        ]
        if not names:
            # InfluxDB 1.x answers SHOW MEASUREMENTS on a missing database with an empty list.
            self._check_database_exists(what)
        return names

    def list_field_keys(self, measurement: str) -> list[FieldInfo]:
        """Fields and their types; a field with different types in different shards appears
        once per type."""
        return self._field_keys(measurement)

    def list_series(self, measurement: str) -> list[Tags] | None:
        """The tag sets of the measurement's series (`SHOW SERIES`), or None where the server
        has no such statement (InfluxDB 3)."""
        if not self.generation.lists_series:
            return None
        query = f"SHOW SERIES FROM {self._source_of(measurement)}"
        series = self._conn.metadata(query, f"listing series of {quote_ident(measurement)}")
        return [parse_series_key(str(key))[1] for key in column(series, "key")]

    def list_signals(self, query: SeriesQuery) -> list[SeriesFields]:
        """Each series with a value in the query's window and the fields it has values of:
        one `last(*)` row per series, so the cost is one point per series and field."""
        what = f"discovering the signals of {quote_ident(query.measurement)}"
        statement = last_per_series(self._source_of(query.measurement), query)
        return signals_of_last_rows(
            self._conn.metadata(statement, what, query.window), query.fields
        )

    def newest_ns(self, measurement: str) -> int | None:
        """The time of the measurement's newest point (None without points)."""
        what = f"finding the newest point of {quote_ident(measurement)}"
        series = self._conn.metadata(newest_point(self._source_of(measurement)), what)
        return next((int(t) for t in column(series, "time")), None)

    def stream_window(
        self, query: SeriesQuery, *, chunk_size: int | None = None
    ) -> Iterator[SeriesBatch]:
        """The points of the query's window ([start, end)), one batch per series per chunk.

        Rows are `[time_ns, value, ...]` aligned with the batch's `columns` (field names).
        Once a batch has been yielded, any failure raises: discard what this window yielded
        and read it again; the stream is never resumed half-way.
        """
        read = self._window_read(query, chunk_size)
        # Without `columnar` every batch is a SeriesBatch.
        return cast(Iterator[SeriesBatch], self._stream_with_retries(read, columnar=False))

    def stream_window_columns(
        self, query: SeriesQuery, *, chunk_size: int | None = None
    ) -> Iterator[SeriesBatch | SeriesColumns]:
        """`stream_window`, with the series whose rows msgpack lets decode straight into
        columns given as `SeriesColumns` (the same values; `batch()` gives the rows)."""
        return self._stream_with_retries(self._window_read(query, chunk_size), columnar=True)

    def _window_read(self, query: SeriesQuery, chunk_size: int | None) -> _WindowRead:
        size = self.settings.chunk_size if chunk_size is None else chunk_size
        if size <= 0:
            raise ValueError(f"chunk_size must be positive, got {size}")
        measurement, window, fields = query.measurement, query.window, query.fields
        source = self._source_of(measurement)
        tag_filter = query.tag_filter
        statement = select_window(source, window, fields=fields, tag_filters=tag_filter)
        selected = tuple(dict.fromkeys(fields)) if fields is not None else None
        return _WindowRead(measurement, source, window, statement, size, selected, tag_filter)

    def window_stats(self, measurement: str, window: Window) -> dict[str, FieldStats]:
        """Per field with values in the window: how many, and the first and last time.

        A field with several types (one per shard) is counted and timed across all of them.
        """
        source = self._source_of(measurement)
        what = f"counting {quote_ident(measurement)}"
        types = self._field_types(measurement, retry=True)
        query = count_window(source, window, field_types=types)
        counts = field_counts(self._conn.metadata(query, what, window))
        stats: dict[str, FieldStats] = {}
        for field, count in counts.items():
            several = len(types.get(field, ())) > 1
            kinds: Sequence[str | None] = sorted(types[field]) if several else [None]
            firsts = [
                t
                for kind in kinds
                if (t := self._selector_time("first", field, source, window, measurement, kind))
                is not None
            ]
            lasts = [
                t
                for kind in kinds
                if (t := self._selector_time("last", field, source, window, measurement, kind))
                is not None
            ]
            stats[field] = FieldStats(
                count=count,
                first_ns=min(firsts) if firsts else None,
                last_ns=max(lasts) if lasts else None,
            )
        return stats

    def _source_of(self, measurement: str) -> str:
        return qualified_measurement(
            measurement, self.settings.database, self.settings.retention_policy
        )

    def _check_database_exists(self, what: str) -> None:
        try:
            databases = {
                str(name) for name in column(self._conn.metadata("SHOW DATABASES", what), "name")
            }
        except (InfluxQueryError, InfluxAuthError):
            return  # not allowed to list databases: nothing to conclude
        if databases and self.settings.database not in databases:
            raise InfluxDatabaseNotFound(
                self.source, what, f"database not found: {self.settings.database}"
            )

    def _field_keys(self, measurement: str, *, retry: bool = True) -> list[FieldInfo]:
        query = f"SHOW FIELD KEYS FROM {self._source_of(measurement)}"
        what = f"listing field keys of {quote_ident(measurement)}"
        series = self._conn.metadata(query, what, retry=retry)
        keys = column(series, "fieldKey")
        types = column(series, "fieldType")
        infos = [FieldInfo(measurement, str(k), str(t)) for k, t in zip(keys, types, strict=True)]
        known: dict[str, set[str]] = {}
        for info in infos:
            known.setdefault(info.field, set()).add(info.influx_type)
        self._known_types[measurement] = {name: frozenset(t) for name, t in known.items()}
        return infos

    def _field_types(self, measurement: str, *, retry: bool = False) -> dict[str, frozenset[str]]:
        """Field name -> its types; read within a window's attempt, so no retries of its own
        unless asked."""
        types: dict[str, set[str]] = {}
        for info in self._field_keys(measurement, retry=retry):
            types.setdefault(info.field, set()).add(info.influx_type)
        return {name: frozenset(found) for name, found in types.items()}

    def _selector_time(
        self,
        selector: Literal["first", "last"],
        field: str,
        source: str,
        window: Window,
        measurement: str,
        influx_type: str | None = None,
    ) -> int | None:
        what = f"finding the {selector} {quote_ident(field)} of {quote_ident(measurement)}"
        query = selector_window(selector, field, source, window, influx_type)
        series = self._conn.metadata(query, what, window)
        for piece in series:
            for row in piece.get("values") or ():
                return int(row[0])
        return None

    # -- streaming a window -----------------------------------------------------------------------
    def _stream_with_retries(
        self, read: _WindowRead, *, columnar: bool
    ) -> Iterator[SeriesBatch | SeriesColumns]:
        try:
            _ = self.generation
        except InfluxError as exc:  # name the window the caller asked for
            raise type(exc)(
                exc.source, read.what, exc.cause, read.window, exc.hint, exc.status
            ) from exc
        attempt = 0
        while True:
            progress = _Progress()
            try:
                yield from self._stream_once(read, progress, columnar=columnar)
                return
            except InfluxTransientError as exc:
                if progress.batches:
                    raise
                if attempt >= self._stream_retries:
                    raise self._conn.gave_up(exc, attempt + 1) from exc
                time.sleep(self._conn.log_retry(exc, attempt))
                attempt += 1

    def _open_window(self, read: _WindowRead) -> tuple[httpx.Response, WireFormat]:
        """Open the window's stream; with `auto`, find the first format the server accepts."""
        if self.settings.format != "auto":
            candidates: tuple[WireFormat, ...] = (self.settings.format,)
        elif self._negotiated is not None:
            candidates = (self._negotiated,)
        elif self.generation.msgpack is None:
            # InfluxDB 3.0-3.6 answer msgpack with HTTP 500; 3.7+ is told apart by /ping.
            candidates = _AUTO_WITHOUT_MSGPACK
        else:
            candidates = _AUTO_ORDER
        for index, fmt in enumerate(candidates):
            try:
                response = self._conn.open(read.query, fmt, read.chunk_size, read.what, read.window)
            except (InfluxQueryError, InfluxConfigError, InfluxTransientError) as exc:
                # A 4xx answer to a format the server does not speak, or InfluxDB 3.0-3.6's
                # HTTP 500 to msgpack: try the next one. A query the server rejects fails in
                # every format; other server errors are retried as they are.
                refused = exc.status is not None and (
                    not isinstance(exc, InfluxTransientError)
                    or (fmt == "msgpack" and exc.status == 500 and self.generation.major >= 3)
                )
                if not refused or index + 1 == len(candidates):
                    raise
                self._conn.log.info(
                    "source '%s': the server refused %s (%s); trying %s",
                    self.source,
                    fmt,
                    exc.cause,
                    candidates[index + 1],
                )
                continue
            kind = self._conn.content_kind(response, read.what, read.window)
            if self.settings.format == "auto" and self._negotiated is None:
                self._negotiated = kind
                self._conn.log.info("source '%s': reading InfluxDB as %s", self.source, kind)
            return response, kind
        raise AssertionError("unreachable: the last candidate re-raises")

    def _stream_once(
        self, read: _WindowRead, progress: _Progress, *, columnar: bool
    ) -> Iterator[SeriesBatch | SeriesColumns]:
        types: dict[str, frozenset[str]] | None = None
        if self._untyped(self.wire_format):
            # JSON writes 2.0 as 2 (so does 3.x's msgpack), CSV has no types: they need the
            # schema.
            types = self._field_types(read.measurement)
        # A field whose type differs between shards is read once per type (see
        # `select_window`); msgpack reads go by the types last listed (`list_field_keys`).
        known = types if types is not None else self._known_types.get(read.measurement, {})
        if any(len(known.get(f, ())) > 1 for f in read.fields or known):
            query = select_window(
                read.source,
                read.window,
                fields=read.fields,
                tag_filters=read.tag_filter,
                field_types=known,
            )
            read = dataclasses.replace(read, query=query)
        response, kind = self._open_window(read)
        try:
            if self._untyped(kind) and types is None:
                types = self._field_types(read.measurement)
            if kind == "csv":
                tally = CsvTally({}, {})
                lines = text_lines(response.iter_bytes())
                for batch in csv_batches(lines, read.chunk_size, types or {}, tally):
                    progress.batches += 1
                    yield merged(batch)
                self._verify_csv(read, tally, types or {})
                return
            float_fields = (
                frozenset(name for name, found in types.items() if "float" in found)
                if types is not None
                else frozenset()
            )
            if columnar and kind == "msgpack":
                documents = msgpack_column_documents(response.iter_bytes())
                if self.generation.msgpack == "arrays":
                    documents = documents_from_arrays(documents)
            else:
                documents = self._conn.documents(response, kind, read.what, read.window)
            for series in self._conn.series(documents, read.what, read.window):
                values = series.get("values")
                if isinstance(values, ValueColumns):
                    decoded = self._columns(series, values, read, float_fields)
                    if len(decoded.rows if isinstance(decoded, SeriesBatch) else decoded):
                        progress.batches += 1
                        yield decoded
                    continue
                batch = merged(self._batch(series, read, float_fields))
                if batch.rows:
                    progress.batches += 1
                    yield batch
        except CsvServerError as exc:
            raise self._conn.server_error(read.what, read.window, str(exc)) from exc
        except UnexpectedShape as exc:
            raise InfluxQueryError(self.source, read.what, str(exc), read.window) from exc
        except (Truncated, csv.Error) as exc:
            raise self._broken(read, progress, str(exc)) from exc
        except httpx.TransportError as exc:
            raise self._broken(read, progress, str(exc) or type(exc).__name__) from exc
        finally:
            response.close()

    def _untyped(self, kind: WireFormat | None) -> bool:
        """Whether a format loses the float type of whole numbers."""
        return kind is not None and (kind != "msgpack" or self.generation.msgpack == "arrays")

    def _broken(self, read: _WindowRead, progress: _Progress, detail: str) -> InfluxTransientError:
        cause = f"the stream broke after {progress.batches} batches ({detail})"
        hint = "Discard what this window yielded and read it again; check the server's health"
        return InfluxTransientError(
            self.source, read.what, self._conn.redact(cause), read.window, hint
        )

    def _columns(
        self,
        series: dict[str, Any],
        values: ValueColumns,
        read: _WindowRead,
        float_fields: frozenset[str],
    ) -> SeriesBatch | SeriesColumns:
        """What `_batch` makes of a series, from values decoded into columns."""
        fields = self._fields(series, read)
        if len(fields) != len(values.cells):  # rows and columns disagree: the rows tell how
            return merged(self._batch({**series, "values": values.rows()}, read, float_fields))
        decoded = SeriesColumns(
            measurement=str(series.get("name", read.measurement)),
            tags=normalize_tags(series.get("tags")),
            columns=fields,
            times=values.times,
            values=[
                cell.as_floats() if name in float_fields else cell
                for name, cell in zip(fields, values.cells, strict=True)
            ],
        )
        if len(set(fields)) != len(fields):  # a field read once per type: folded as rows
            return merged(decoded.batch())
        return decoded

    def _fields(self, series: dict[str, Any], read: _WindowRead) -> tuple[str, ...]:
        columns = series.get("columns") or ()
        if not columns or columns[0] != "time":
            raise InfluxQueryError(
                self.source, read.what, f"unexpected columns {list(columns)!r}", read.window
            )
        return tuple(columns[1:])

    def _batch(
        self, series: dict[str, Any], read: _WindowRead, float_fields: frozenset[str]
    ) -> SeriesBatch:
        fields = self._fields(series, read)
        rows: list[list[FieldValue]] = series.get("values") or []
        for index, name in enumerate(fields, start=1):
            if name in float_fields:
                for row in rows:
                    value = row[index]
                    if type(value) is int:
                        row[index] = float(value)
        return SeriesBatch(
            measurement=str(series.get("name", read.measurement)),
            tags=normalize_tags(series.get("tags")),
            columns=fields,
            rows=rows,
        )

    def _verify_csv(
        self, read: _WindowRead, tally: CsvTally, types: Mapping[str, frozenset[str]]
    ) -> None:
        """CSV carries no errors or partial flags: compare what arrived with the server's count."""
        what = f"checking the CSV read of {quote_ident(read.measurement)}"
        query = count_window(read.source, read.window, read.tag_filter, types)
        expected = field_counts(self._conn.metadata(query, what, read.window))
        names = read.fields if read.fields is not None else sorted({*expected, *tally.present})
        for name in names:
            want = expected.get(name, 0)
            present = tally.present.get(name, 0)
            # An empty string and a missing value look the same in CSV.
            if not present <= want <= present + tally.blank.get(name, 0):
                raise InfluxTransientError(
                    self.source,
                    read.what,
                    f"the CSV response held {present} values of field {name!r} but the server "
                    f"counts {want}: the server cut the stream short (CSV hides its errors) or "
                    "the window changed while it was read",
                    read.window,
                    "Discard what this window yielded and read it again; prefer format msgpack "
                    "or json, which report server errors",
                )


@dataclass(frozen=True)
class _WindowRead:
    measurement: str
    source: str
    window: Window
    query: str
    chunk_size: int
    fields: tuple[str, ...] | None
    tag_filter: TagFilter | None

    @property
    def what(self) -> str:
        return f"reading {quote_ident(self.measurement)}"


@dataclass
class _Progress:
    batches: int = 0
