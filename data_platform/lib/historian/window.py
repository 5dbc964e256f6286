"""Atomic replacement of a window: delete its rows, then COPY the streamed batches, in one go.

One transaction per window: a failure anywhere (reader, registry, COPY) leaves the window as it
was. Concurrent writers of overlapping windows take turns on advisory locks (`WindowLock`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from data_platform.lib.historian import vectors
from data_platform.lib.historian.copy import (
    NS_META,
    PG_EPOCH_US,
    ValueCopy,
    copy_statement,
    widen_send_buffer,
)
from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.locks import advisory_key, session_locks
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import RegisteredSignal, Signal
from data_platform.lib.historian.tables import HistorianTables
from data_platform.lib.influx.reader.model import FieldValue, SeriesBatch, SeriesColumns, Tags
from data_platform.lib.timing.window import Window

PREVIEW_ROWS = 5
"""Values of a window kept for the run's preview."""


@dataclass(frozen=True, slots=True)
class WindowLock:
    """Serialises the transactions that replace overlapping windows of the same signals.

    Time is cut into `slot`-wide slots counted from the epoch. Before it reads which rows to
    delete, a writer takes an advisory lock on every slot its window touches, in time order (so
    two writers cannot deadlock), and keeps them until its transaction has ended. Two runs of
    one partition, or neighbours whose windows overlap through `lateness`, then replace the
    shared part one after the other instead of colliding on the unique (tag_id, ts) key;
    windows that share no slot are written in parallel.
    """

    signals: str
    """What the rows belong to, e.g. `<source>/<measurement>`: other signals never wait."""
    slot: timedelta

    def keys(self, tables: HistorianTables, window: Window) -> list[int]:
        """The lock keys of the slots `window` touches, in time order."""
        slot_ns = self.slot // timedelta(microseconds=1) * 1000
        first, last = window.start_ns // slot_ns, (window.end_ns - 1) // slot_ns
        return [
            advisory_key("historian", str(tables), self.signals, n) for n in range(first, last + 1)
        ]


@dataclass(slots=True)
class SeriesTiming:
    """Row count, time span and longest silence of one series in a window (microseconds)."""

    series: str
    rows: int = 0
    first_us: int | None = None
    last_us: int | None = None
    longest_us: int = 0
    longest_from_us: int | None = None

    @property
    def usual_interval_us(self) -> float | None:
        """The mean interval without the longest silence: what the series normally does."""
        if self.rows < 3 or self.first_us is None or self.last_us is None:
            return None
        return (self.last_us - self.first_us - self.longest_us) / (self.rows - 2)


WRITE_STEPS = ("lock", "delete", "read", "registry", "check", "encode", "copy")
"""The steps of a window's replacement: waiting for its turn, deleting the old rows, waiting
for the reader's next batch (reading and decoding), registering new signals, checking rows,
encoding them, and waiting on the COPY (the server inserting, and finishing the COPY)."""


@dataclass(slots=True)
class WindowWrite:
    """What one window's replacement did."""

    rows: int = 0
    deleted: int = 0
    signals: set[int] = field(default_factory=set)
    newest_ns: int | None = None
    collisions: int = 0
    preview: list[tuple[Any, ...]] = field(default_factory=list)
    timings: dict[tuple[str, Tags], SeriesTiming] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(WRITE_STEPS, 0.0))
    """Where the window's time went, by step of `WRITE_STEPS`."""

    @property
    def series(self) -> int:
        """Series with at least one row in the window."""
        return sum(1 for t in self.timings.values() if t.rows)


def replace_window(
    conn: psycopg.Connection,
    registry: SignalRegistry,
    window: Window,
    batches: Iterable[SeriesBatch | SeriesColumns],
    *,
    delete_tag_ids: Callable[[], Sequence[int]],
    register_conn: psycopg.Connection,
    on_collision: str = "fail",
    lock: WindowLock | None = None,
) -> WindowWrite:
    """Replace the window's rows of `registry`'s source in one transaction of `conn`.

    Signals registered during the stream are new to the registry, so they have no rows to
    delete: deleting the signals known before the stream covers the window. New signals are
    registered through `register_conn`, a second connection in autocommit mode: `conn` is busy
    with the COPY meanwhile, and the registry rows must not wait for the window's transaction.
    With `lock`, the turn is taken on session locks of `register_conn`, before the window's
    transaction begins and released once it has ended; the signals to delete are read once the
    turn has come (outside that transaction: some engines serve one transaction at a time), so
    they include those another writer just added.
    """
    tables = registry.tables
    stream = _WindowStream(registry, window, register_conn, on_collision)
    seconds = stream.result.seconds
    started = time.perf_counter()
    with session_locks(register_conn, lock.keys(tables, window) if lock is not None else []):
        known_ids = list(delete_tag_ids())
        with conn.transaction(), conn.cursor() as cur:
            seconds["lock"] += time.perf_counter() - started
            stream.result.deleted = _delete_rows(cur, tables, window, known_ids)
            seconds["delete"] += time.perf_counter() - started - seconds["lock"]
            widen_send_buffer(conn)
            with cur.copy(copy_statement(tables.hist)) as copy:
                out = ValueCopy(copy)
                try:
                    stream.copy_batches(out, batches)
                finally:
                    out.close()
                finishing = time.perf_counter()
            seconds["copy"] += out.copy_s + time.perf_counter() - finishing
    return stream.result


def _with_values(batch: SeriesBatch) -> SeriesBatch:
    """The batch without the columns it has no value of: `SELECT *` gives every series every
    field of the measurement, and a field without values is no signal of that series."""
    empty = [
        index
        for index in range(1, len(batch.columns) + 1)
        if all(row[index] is None for row in batch.rows)
    ]
    if not empty:
        return batch
    keep = [0, *(i for i in range(1, len(batch.columns) + 1) if i not in empty)]
    columns = tuple(batch.columns[i - 1] for i in keep[1:])
    rows = [[row[i] for i in keep] for row in batch.rows]
    return SeriesBatch(batch.measurement, batch.tags, columns, rows)


def _row_count(batch: SeriesBatch | SeriesColumns) -> int:
    return len(batch.rows) if isinstance(batch, SeriesBatch) else len(batch)


def _timed(
    batches: Iterable[SeriesBatch | SeriesColumns], seconds: dict[str, float]
) -> Iterator[SeriesBatch | SeriesColumns]:
    """The batches, with the time spent waiting for each added to `seconds["read"]`."""
    stream = iter(batches)
    while True:
        started = time.perf_counter()
        batch = next(stream, None)
        seconds["read"] += time.perf_counter() - started
        if batch is None:
            return
        yield batch


def _delete_rows(
    cur: psycopg.Cursor, tables: HistorianTables, window: Window, tag_ids: Sequence[int]
) -> int:
    """Delete the window's rows of the signals known before the stream; return how many."""
    if not tag_ids:
        return 0
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE tag_id = ANY(%s) AND ts >= %s AND ts < %s").format(
            tables.hist
        ),
        [list(tag_ids), window.start, window.end],
    )
    return cur.rowcount


class _WindowStream:
    """One window's stream into the COPY: the report so far and each series' last row."""

    def __init__(
        self,
        registry: SignalRegistry,
        window: Window,
        register_conn: psycopg.Connection,
        on_collision: str,
    ) -> None:
        self.registry = registry
        self.window = window
        self.register_conn = register_conn
        self.on_collision = on_collision
        self.result = WindowWrite()
        # Per series: the previous row's microsecond, the row and its columns, to detect
        # sub-microsecond clashes across batches.
        self._previous: dict[tuple[str, Tags], tuple[int, list[FieldValue], tuple[str, ...]]] = {}

    def copy_batches(self, out: ValueCopy, batches: Iterable[SeriesBatch | SeriesColumns]) -> None:
        """Stream the batches into the COPY and close it. A batch decoded into columns is
        checked and encoded as columns; if the checks find anything to say (a point outside
        the window, out of order, a clash) it goes through the row checks like any batch."""
        source = self.registry.source
        seconds = self.result.seconds
        for item in _timed(batches, seconds):
            batch = item.with_values() if isinstance(item, SeriesColumns) else _with_values(item)
            if not _row_count(batch):
                continue
            started = time.perf_counter()
            registered = self.registry.ensure(
                self.register_conn,
                [Signal(source, batch.measurement, batch.tags, c) for c in batch.columns],
            )
            checked = time.perf_counter()
            seconds["registry"] += checked - started
            tag_ids = [r.tag_id for r in registered]
            copied = out.copy_s
            if isinstance(batch, SeriesColumns):
                times = self._check_times(batch, batch.times, registered)
                if times is not None:
                    encoding = time.perf_counter()
                    seconds["check"] += encoding - checked
                    written = vectors.write_value_columns(out, tag_ids, batch.values, *times)
                    seconds["encode"] += time.perf_counter() - encoding - (out.copy_s - copied)
                    self._report(batch, batch.rows(0, PREVIEW_ROWS), registered, written)
                    continue
                batch = batch.batch()
            times = self._check_vectors(batch, registered)
            per_value = self._check_rows(batch, registered) if times is None else None
            encoding = time.perf_counter()
            seconds["check"] += encoding - checked
            if times is not None:
                written = vectors.write_batch(out, tag_ids, batch.rows, *times)
            else:
                assert per_value is not None
                written = out.write_columns(tag_ids, batch.rows, *per_value)
            seconds["encode"] += time.perf_counter() - encoding - (out.copy_s - copied)
            self._report(batch, batch.rows[:PREVIEW_ROWS], registered, written)
        out.finish()

    def _check_vectors(
        self, batch: SeriesBatch, registered: Sequence[RegisteredSignal]
    ) -> tuple[vectors.Int64s, vectors.Int64s] | None:
        """`_check_rows` at once for a long batch inside the window, in time order without
        clashes; None leaves the batch to `_check_rows` (which also names what is wrong)."""
        rows = batch.rows
        if len(rows) < vectors.MIN_ROWS:
            return None
        ns = vectors.nanoseconds([row[0] for row in rows])
        if ns is None:
            return None
        return self._check_times(batch, ns, registered)

    def _check_times(
        self,
        batch: SeriesBatch | SeriesColumns,
        ns: vectors.Int64s,
        registered: Sequence[RegisteredSignal],
    ) -> tuple[vectors.Int64s, vectors.Int64s] | None:
        """`_check_vectors` on the batch's times `ns`: microseconds and nanosecond rests."""
        if ns.min() < self.window.start_ns or ns.max() >= self.window.end_ns:
            return None
        us = ns // 1000
        series = (batch.measurement, batch.tags)
        prev_us, _prev_row = self._previous_row(series, batch.columns)
        steps = np.diff(us) if prev_us is None else np.diff(us, prepend=prev_us)
        if len(steps) and steps.min() <= 0:
            return None
        timing = self.result.timings.get(series)
        if timing is None:
            timing = self.result.timings[series] = SeriesTiming(registered[0].signal.series_key)
        if prev_us is None:
            timing.first_us = int(us[0])
        if len(steps) and (longest := int(steps.max())) > timing.longest_us:
            at = int(steps.argmax())
            timing.longest_us = longest
            if prev_us is None:
                timing.longest_from_us = int(us[at])
            else:
                timing.longest_from_us = prev_us if at == 0 else int(us[at - 1])
        timing.rows += len(ns)
        timing.last_us = int(us[-1])
        last = batch.rows[-1] if isinstance(batch, SeriesBatch) else batch.rows(-1, None)[0]
        self._previous[series] = (timing.last_us, last, batch.columns)
        return us, ns - us * 1000

    def _check_rows(
        self, batch: SeriesBatch, registered: Sequence[RegisteredSignal]
    ) -> tuple[list[int], list[bytes | None]]:
        """Check bounds and order, drop clashing values, time the series; give stamps and metas."""
        source, window = self.registry.source, self.window
        start_ns, end_ns = window.start_ns, window.end_ns
        series = (batch.measurement, batch.tags)
        prev_us, prev_row = self._previous_row(series, batch.columns)
        timing = self.result.timings.get(series)
        if timing is None:
            timing = self.result.timings[series] = SeriesTiming(registered[0].signal.series_key)
        rows = batch.rows
        stamps: list[int] = []
        metas: list[bytes | None] = []
        for j, row in enumerate(rows):
            ts_ns = row[0]
            if not start_ns <= ts_ns < end_ns:  # type: ignore[operator]
                raise HistorianWriteError(
                    f"source '{source}': a point at {ts_ns} ns lies outside window "
                    f"{window}; the reader returned data it was not asked for"
                )
            ts_us, ns_rest = divmod(ts_ns, 1000)  # type: ignore[operator]
            merged = None
            if prev_us is not None:
                if ts_us <= prev_us:
                    if ts_us < prev_us:
                        raise HistorianWriteError(
                            f"source '{source}', window {window}: points of series "
                            f"{timing.series!r} arrived out of time order"
                        )
                    # A third point in the same microsecond clashes with either of them.
                    merged = [
                        a if a is not None else b for a, b in zip(row, prev_row or row, strict=True)
                    ]
                    rows[j] = self._drop_collisions(row, prev_row, registered, ts_ns)
                elif ts_us - prev_us > timing.longest_us:
                    timing.longest_us = ts_us - prev_us
                    timing.longest_from_us = prev_us
            else:
                timing.first_us = ts_us
            timing.rows += 1
            stamps.append(ts_us - PG_EPOCH_US)
            metas.append(NS_META % ns_rest if ns_rest else None)
            prev_us, prev_row = ts_us, merged or rows[j]
        timing.last_us = prev_us
        self._previous[series] = (prev_us, prev_row, batch.columns)  # type: ignore[assignment]
        return stamps, metas

    def _previous_row(
        self, series: tuple[str, Tags], columns: tuple[str, ...]
    ) -> tuple[int | None, list[FieldValue] | None]:
        """The series' last row so far (in `columns` order) and its microsecond."""
        prev_us, prev_row, prev_columns = self._previous.get(series, (None, None, None))
        if prev_row is not None and prev_columns != columns:
            by_name = dict(zip(prev_columns or (), prev_row[1:], strict=True))
            prev_row = [prev_row[0], *(by_name.get(c) for c in columns)]
        return prev_us, prev_row

    def _drop_collisions(
        self,
        row: list[FieldValue],
        prev_row: list[FieldValue] | None,
        registered: Sequence[RegisteredSignal],
        ts_ns: FieldValue,
    ) -> list[FieldValue]:
        """A row in the same microsecond as the series' previous row: its clashing values go."""
        kept = list(row)
        for i, signal in enumerate(registered):
            if row[i + 1] is None or prev_row is None or prev_row[i + 1] is None:
                continue
            self.result.collisions += 1
            if self.on_collision == "fail":
                raise HistorianWriteError(
                    f"source '{self.registry.source}', window {self.window}: two points of "
                    f"signal {signal.tag_name!r} fall in the same microsecond ({ts_ns} ns); "
                    "PostgreSQL keeps microseconds. Set `on_timestamp_collision: keep_first` to "
                    "keep the first point and count the rest"
                )
            kept[i + 1] = None
        return kept

    def _report(
        self,
        batch: SeriesBatch | SeriesColumns,
        head: list[list[FieldValue]],
        registered: Sequence[RegisteredSignal],
        written: int,
    ) -> None:
        """Add a copied batch to the window's report: counts, newest point, preview (from
        `head`, the batch's first rows)."""
        result = self.result
        result.rows += written
        result.signals.update(r.tag_id for r in registered)
        last_ns = batch.rows[-1][0] if isinstance(batch, SeriesBatch) else int(batch.times[-1])
        if result.newest_ns is None or last_ns > result.newest_ns:  # type: ignore[operator]
            result.newest_ns = last_ns  # type: ignore[assignment]
        if len(result.preview) >= PREVIEW_ROWS:
            return
        for row in head:
            for i, r in enumerate(registered):
                value = row[i + 1]
                if value is not None and len(result.preview) < PREVIEW_ROWS:
                    number = None if isinstance(value, str) else float(value)
                    text = value if isinstance(value, str) else None
                    result.preview.append((row[0], r.tag_name, number, text))
