"""The historian model in the warehouse: a narrow value table and a signal registry.

`<schema>.<table>` holds one row per (signal, timestamp); `<schema>.<registry>` maps every
(measurement, tag set, field) to a stable integer signal id (`tag_id`) with its name, type and
unit. Windows are replaced atomically: delete the window's rows of the affected signals, then
bulk `COPY` the fresh rows, in one transaction.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from data_platform.lib.influx.reader.model import FieldValue, SeriesBatch, Tags
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import has_timescaledb

# PostgreSQL's binary timestamptz is int64 microseconds since 2000-01-01 UTC: the same bytes as
# an int8, so rows are copied with the timestamp as a plain integer (no datetime per value).
_PG_EPOCH_US = 946_684_800_000_000


class HistorianWriteError(Exception):
    """A window could not be written; nothing of it was committed."""


@dataclass(frozen=True, slots=True)
class HistorianTables:
    """Where a source's values and signal registry live."""

    schema: str
    table: str = "influx_hist"
    registry: str = "influx_tag"
    chunk_interval: str = "7 days"

    @property
    def hist(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def tags(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.registry)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


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

    def keys(self, tables: HistorianTables, window: Window) -> list[str]:
        slot_ns = self.slot // timedelta(microseconds=1) * 1000
        first, last = window.start_ns // slot_ns, (window.end_ns - 1) // slot_ns
        return [f"historian:{tables}:{self.signals}:{n}" for n in range(first, last + 1)]


@dataclass(frozen=True, slots=True)
class Signal:
    """One (measurement, tag set, field): a time series of values in the warehouse."""

    source: str
    measurement: str
    tags: Tags
    field: str

    @property
    def key(self) -> str:
        """Canonical, unambiguous text of the signal identity (the registry's unique key)."""
        return json.dumps(
            [self.source, self.measurement, [list(t) for t in self.tags], self.field],
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @property
    def series_key(self) -> str:
        """The series in line-protocol form, e.g. `power,site=north,device=inv\\ 1`."""
        parts = [_escape_lp(self.measurement, ", ")]
        parts.extend(f"{_escape_lp(k, ',= ')}={_escape_lp(v, ',= ')}" for k, v in self.tags)
        return ",".join(parts)

    def default_name(self) -> str:
        """`<source>/<series key>.<field>`: unique for every source, series and field."""
        return f"{self.source}/{self.series_key}.{_escape_lp(self.field, '.')}"


def _escape_lp(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for ch in specials:
        text = text.replace(ch, "\\" + ch)
    return text


@dataclass(frozen=True, slots=True)
class RegisteredSignal:
    tag_id: int
    tag_name: str
    signal: Signal
    tag_type: str | None


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


@dataclass(slots=True)
class WindowWrite:
    """What one window's replacement did."""

    rows: int = 0
    deleted: int = 0
    signals: set[int] = field(default_factory=set)
    newest_ns: int | None = None
    oldest_ns: int | None = None
    collisions: int = 0
    preview: list[tuple[Any, ...]] = field(default_factory=list)
    timings: dict[tuple[str, Tags], SeriesTiming] = field(default_factory=dict)

    @property
    def series(self) -> int:
        """Series with at least one row in the window."""
        return sum(1 for t in self.timings.values() if t.rows)


def ensure_tables(conn: psycopg.Connection, tables: HistorianTables) -> str | None:
    """Create schema, registry and value table when missing. Returns the TimescaleDB version."""
    timescale = has_timescaledb(conn)
    with conn.transaction():
        # Serialise concurrent first runs; the lock ends with the transaction.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"historian:{tables}"])
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tables.schema))
        )
        conn.execute(
            sql.SQL(
                """
                CREATE TABLE IF NOT EXISTS {tags} (
                    tag_id      integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    key         text NOT NULL UNIQUE,
                    tag_name    text NOT NULL UNIQUE,
                    source      text NOT NULL,
                    measurement text NOT NULL,
                    tags        jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    field       text NOT NULL,
                    tag_type    text,
                    unit        text,
                    meta        jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    created_at  timestamptz NOT NULL DEFAULT now(),
                    updated_at  timestamptz NOT NULL DEFAULT now(),
                    removed_at  timestamptz
                )
                """
            ).format(tags=tables.tags)
        )
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (source, measurement)").format(
                sql.Identifier(f"{tables.registry}_measurement_idx"), tables.tags
            )
        )
        exists = conn.execute("SELECT to_regclass(%s)", [_qualified(tables.schema, tables.table)])
        if (row := exists.fetchone()) is not None and row[0] is not None:
            return timescale
        conn.execute(
            sql.SQL(
                """
                CREATE TABLE {hist} (
                    ts         timestamptz NOT NULL,
                    tag_id     integer NOT NULL,
                    value      double precision,
                    value_text text,
                    qc         smallint NOT NULL DEFAULT 0,
                    meta       jsonb,
                    CONSTRAINT {unique} UNIQUE (tag_id, ts)
                )
                """
            ).format(hist=tables.hist, unique=sql.Identifier(f"{tables.table}_tag_id_ts_key"))
        )
        if timescale:
            conn.execute(
                "SELECT create_hypertable(%s::regclass, by_range('ts', %s::interval))",
                [_qualified(tables.schema, tables.table), tables.chunk_interval],
            )
        else:
            # Time-range scans across all signals (rollups, retention) use BRIN; window
            # replacement per signal uses the (tag_id, ts) unique index.
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} USING brin (ts)").format(
                    sql.Identifier(f"{tables.table}_ts_brin"), tables.hist
                )
            )
    return timescale


def _qualified(schema: str, name: str) -> str:
    return sql.Identifier(schema, name).as_string(None)


class SignalRegistry:
    """The registry rows of one source, cached for a run; new signals are added on sight."""

    def __init__(
        self,
        source: str,
        tables: HistorianTables,
        namer: Callable[[Signal], str],
        units: Callable[[Signal], str | None] = lambda _s: None,
    ) -> None:
        self.source = source
        self.tables = tables
        self.namer = namer
        self.units = units
        self._by_signal: dict[Signal, RegisteredSignal] = {}

    def load(
        self, conn: psycopg.Connection, measurement: str | None = None
    ) -> list[RegisteredSignal]:
        """Read the source's registered signals (of one measurement, or all)."""
        query = sql.SQL(
            "SELECT tag_id, tag_name, measurement, tags, field, tag_type FROM {} "
            "WHERE source = %s {}"
        ).format(
            self.tables.tags,
            sql.SQL("AND measurement = %s") if measurement is not None else sql.SQL(""),
        )
        params = [self.source] if measurement is None else [self.source, measurement]
        rows = conn.execute(query, params).fetchall()
        out = []
        for tag_id, tag_name, meas, tags, fld, tag_type in rows:
            signal = Signal(
                self.source, meas, tuple(sorted((str(k), str(v)) for k, v in tags.items())), fld
            )
            registered = RegisteredSignal(tag_id, tag_name, signal, tag_type)
            self._by_signal[signal] = registered
            out.append(registered)
        return out

    def get(self, signal: Signal) -> RegisteredSignal | None:
        return self._by_signal.get(signal)

    def ensure(
        self,
        conn: psycopg.Connection,
        signals: Iterable[Signal],
        types: dict[tuple[str, str], str] | None = None,
    ) -> list[RegisteredSignal]:
        """Register the signals not yet known (in their own short transaction) and return all."""
        wanted = list(dict.fromkeys(signals))
        missing = [s for s in wanted if s not in self._by_signal]
        if missing:
            self._insert(conn, missing, types or {})
        return [self._by_signal[s] for s in wanted]

    def _insert(
        self, conn: psycopg.Connection, signals: list[Signal], types: dict[tuple[str, str], str]
    ) -> None:
        named = [(s, self.namer(s)) for s in sorted(signals, key=lambda s: s.key)]
        names: dict[str, Signal] = {}
        for signal, name in named:
            if not name:
                raise HistorianWriteError(
                    f"signal naming gave an empty tag_name for {signal.key}; fix `signal_name`"
                )
            other = names.setdefault(name, signal)
            if other != signal:
                raise HistorianWriteError(
                    f"signal naming gives the same tag_name {name!r} to {other.key} and "
                    f"{signal.key}; make `signal_name` include what tells them apart "
                    "(e.g. {{ series }} or every tag)"
                )
        insert = sql.SQL(
            """
            INSERT INTO {tags} (key, tag_name, source, measurement, tags, field, tag_type, unit)
            SELECT k, n, %s, m, t, f, ty, u FROM unnest(%s::text[], %s::text[], %s::text[],
                %s::jsonb[], %s::text[], %s::text[], %s::text[]) AS s(k, n, m, t, f, ty, u)
            ON CONFLICT (key) DO NOTHING
            """
        ).format(tags=self.tables.tags)
        keys = [s.key for s, _ in named]
        with conn.transaction():
            try:
                conn.execute(
                    insert,
                    [
                        self.source,
                        keys,
                        [n for _, n in named],
                        [s.measurement for s, _ in named],
                        [json.dumps(dict(s.tags), ensure_ascii=False) for s, _ in named],
                        [s.field for s, _ in named],
                        [types.get((s.measurement, s.field)) for s, _ in named],
                        [self.units(s) for s, _ in named],
                    ],
                )
            except psycopg.errors.UniqueViolation as exc:
                raise HistorianWriteError(
                    f"a new signal's tag_name is already used by another signal in "
                    f"{self.tables.schema}.{self.tables.registry} ({exc.diag.message_detail}); "
                    "make `signal_name` unique per series and field"
                ) from exc
            rows = conn.execute(
                sql.SQL(
                    "SELECT key, tag_id, tag_name, tag_type FROM {} WHERE key = ANY(%s)"
                ).format(self.tables.tags),
                [keys],
            ).fetchall()
        by_key = {k: (tid, name, ttype) for k, tid, name, ttype in rows}
        for signal, _ in named:
            tag_id, name, ttype = by_key[signal.key]
            self._by_signal[signal] = RegisteredSignal(tag_id, name, signal, ttype)


# Binary COPY rows of the value table, encoded here rather than per value through psycopg's
# generic row formatter (the hot loop of an ingest): (ts int8, tag_id int4, value float8,
# value_text text, qc int2, meta jsonb), NULLs as length -1.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
_COPY_TRAILER = b"\xff\xff"
_NUMBER_ROW = struct.Struct(">hiqiiidiihi").pack
_TEXT_HEAD = struct.Struct(">hiqiiii").pack
_TAIL_NO_META = struct.pack(">ihi", 2, 0, -1)
_FLUSH_BYTES = 1 << 20


def _encode_value(
    buf: bytearray, pg_ts: int, tag_id: int, value: FieldValue, meta: bytes | None
) -> None:
    """Append one value row; `meta` is the jsonb payload (version byte + JSON) or None."""
    kind = type(value)
    if kind is str:
        text = value.encode()  # type: ignore[union-attr]
        buf += _TEXT_HEAD(6, 8, pg_ts, 4, tag_id, -1, len(text))
        buf += text
    else:
        number = float(value) if kind is not bool else (1.0 if value else 0.0)  # type: ignore[arg-type]
        buf += _NUMBER_ROW(6, 8, pg_ts, 4, tag_id, 8, number, -1, 2, 0, -1)
        if meta is None:
            return
        del buf[-4:]  # the row's meta NULL, replaced below
        buf += struct.pack(">i", len(meta))
        buf += meta
        return
    if meta is None:
        buf += _TAIL_NO_META
    else:
        buf += struct.pack(">ihi", 2, 0, len(meta))
        buf += meta


def replace_window(
    conn: psycopg.Connection,
    tables: HistorianTables,
    registry: SignalRegistry,
    window: Window,
    batches: Iterable[SeriesBatch],
    *,
    delete_tag_ids: Callable[[], Sequence[int]],
    register_conn: psycopg.Connection,
    on_collision: str = "fail",
    source: str = "",
    preview_rows: int = 5,
    lock: WindowLock | None = None,
) -> WindowWrite:
    """Replace the window's rows in one transaction: delete, then COPY the streamed batches.

    Signals registered during the stream are new to the registry, so they have no rows to
    delete: deleting the signals known before the stream covers the window. A failure anywhere
    (reader, registry, COPY) rolls the whole window back. New signals are registered through
    `register_conn`, a second connection in autocommit mode: `conn` is busy with the COPY
    meanwhile, and the registry rows must not wait for the window's transaction. With `lock`,
    concurrent writers of overlapping windows take turns (see `WindowLock`); the signals to
    delete are read once the turn has come, so they include those another writer just added.
    """
    result = WindowWrite()
    start_ns, end_ns = window.start_ns, window.end_ns
    copy_sql = sql.SQL(
        "COPY {} (ts, tag_id, value, value_text, qc, meta) FROM STDIN (FORMAT BINARY)"
    ).format(tables.hist)
    # Per series: the previous row's microsecond and the row, to detect sub-microsecond clashes.
    previous: dict[tuple[str, Tags], tuple[int, list[FieldValue], tuple[str, ...]]] = {}
    reg_conn = register_conn
    keys = lock.keys(tables, window) if lock is not None else []
    with (
        _turn(reg_conn, keys, delete_tag_ids) as known_ids,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        if known_ids:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE tag_id = ANY(%s) AND ts >= %s AND ts < %s").format(
                    tables.hist
                ),
                [known_ids, window.start, window.end],
            )
            result.deleted = cur.rowcount
        with cur.copy(copy_sql) as copy:
            buf = bytearray(_COPY_SIGNATURE)
            for batch in batches:
                if not batch.rows:
                    continue
                registered = registry.ensure(
                    reg_conn,
                    [
                        Signal(registry.source, batch.measurement, batch.tags, c)
                        for c in batch.columns
                    ],
                )
                ids = [r.tag_id for r in registered]
                series = (batch.measurement, batch.tags)
                prev_us, prev_row, prev_columns = previous.get(series, (None, None, None))
                if prev_row is not None and prev_columns != batch.columns:
                    by_name = dict(zip(prev_columns or (), prev_row[1:], strict=True))
                    prev_row = [prev_row[0], *(by_name.get(c) for c in batch.columns)]
                timing = result.timings.get(series)
                if timing is None:
                    timing = result.timings[series] = SeriesTiming(registered[0].signal.series_key)
                # Row pass: bounds, order, sub-microsecond clashes, timestamps and silences.
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
                                a if a is not None else b
                                for a, b in zip(row, prev_row or row, strict=True)
                            ]
                            rows[j] = _drop_collisions(
                                row,
                                prev_row,
                                registered,
                                result,
                                on_collision,
                                source,
                                window,
                                ts_ns,
                            )
                        elif ts_us - prev_us > timing.longest_us:
                            timing.longest_us = ts_us - prev_us
                            timing.longest_from_us = prev_us
                    else:
                        timing.first_us = ts_us
                    timing.rows += 1
                    stamps.append(ts_us - _PG_EPOCH_US)
                    metas.append(b'\x01{"ns": %d}' % ns_rest if ns_rest else None)
                    prev_us, prev_row = ts_us, merged or rows[j]
                timing.last_us = prev_us
                previous[series] = (prev_us, prev_row, batch.columns)  # type: ignore[assignment]
                # Column pass: one signal at a time, so the (tag_id, ts) index grows in order.
                any_meta = any(metas)
                pack = _NUMBER_ROW
                written = 0
                for i, tag_id in enumerate(ids):
                    col = i + 1
                    for j, row in enumerate(rows):
                        value = row[col]
                        if value is None:
                            continue
                        written += 1
                        if value.__class__ is float and not any_meta:
                            buf += pack(6, 8, stamps[j], 4, tag_id, 8, value, -1, 2, 0, -1)
                        else:
                            _encode_value(buf, stamps[j], tag_id, value, metas[j])
                    if len(buf) > _FLUSH_BYTES:
                        copy.write(buf)
                        buf = bytearray()
                result.rows += written
                result.signals.update(ids)
                first_ns, last_ns = batch.rows[0][0], batch.rows[-1][0]
                if result.oldest_ns is None or first_ns < result.oldest_ns:  # type: ignore[operator]
                    result.oldest_ns = first_ns  # type: ignore[assignment]
                if result.newest_ns is None or last_ns > result.newest_ns:  # type: ignore[operator]
                    result.newest_ns = last_ns  # type: ignore[assignment]
                if len(result.preview) < preview_rows:
                    for row in batch.rows[:preview_rows]:
                        for i, r in enumerate(registered):
                            value = row[i + 1]
                            if value is not None and len(result.preview) < preview_rows:
                                number = None if isinstance(value, str) else float(value)
                                text = value if isinstance(value, str) else None
                                result.preview.append((row[0], r.tag_name, number, text))
            buf += _COPY_TRAILER
            copy.write(buf)
    return result


@contextmanager
def _turn(
    register_conn: psycopg.Connection,
    keys: Sequence[str],
    delete_tag_ids: Callable[[], Sequence[int]],
) -> Iterator[list[int]]:
    """Hold the window's locks (see `WindowLock`) and give the signals whose rows to delete.

    The locks are session locks of the registry connection, taken before the window's
    transaction begins and released once it has ended: the signals are then read after the
    turn has come, and outside that transaction (some engines serve one transaction at a time).
    """
    for key in keys:
        register_conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        yield list(delete_tag_ids())
    finally:
        try:
            for key in reversed(keys):
                register_conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
        except psycopg.Error:
            register_conn.close()  # ends the session, and with it the locks it still holds


def _drop_collisions(
    row: list[FieldValue],
    prev_row: list[FieldValue] | None,
    registered: Sequence[RegisteredSignal],
    result: WindowWrite,
    on_collision: str,
    source: str,
    window: Window,
    ts_ns: FieldValue,
) -> list[FieldValue]:
    """A row in the same microsecond as the series' previous row: its clashing values go."""
    kept = list(row)
    for i, signal in enumerate(registered):
        if row[i + 1] is None or prev_row is None or prev_row[i + 1] is None:
            continue
        result.collisions += 1
        if on_collision == "fail":
            raise HistorianWriteError(
                f"source '{source}', window {window}: two points of signal "
                f"{signal.tag_name!r} fall in the same microsecond ({ts_ns} ns); PostgreSQL "
                "keeps microseconds. Set `on_timestamp_collision: keep_first` to keep the first "
                "point and count the rest"
            )
        kept[i + 1] = None
    return kept


def iter_signal_rows(
    conn: psycopg.Connection, tables: HistorianTables, window: Window, tag_ids: Sequence[int]
) -> Iterator[tuple[datetime, int, float | None, str | None]]:
    yield from conn.execute(
        sql.SQL(
            "SELECT ts, tag_id, value, value_text FROM {} "
            "WHERE tag_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY tag_id, ts"
        ).format(tables.hist),
        [list(tag_ids), window.start, window.end],
    )
