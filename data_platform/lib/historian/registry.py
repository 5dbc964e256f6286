"""The signal registry of one source: ids for new signals, current types, removed signals."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

import psycopg
from psycopg import sql

from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.signals import RegisteredSignal, Signal
from data_platform.lib.historian.tables import HistorianTables
from data_platform.lib.timing.window import Window

FieldTypes = Mapping[tuple[str, str], str]
"""The InfluxDB type(s) of each (measurement, field), comma-separated when there are several."""


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
        self._by_key: dict[str, RegisteredSignal] = {}

    def load(
        self, conn: psycopg.Connection, measurement: str | None = None
    ) -> list[RegisteredSignal]:
        """Read the source's registered signals (of one measurement, or all).

        Its cost grows with the registry: a run uses `lookup` and `holding` instead, which read
        only the rows of the signals it meets. The registry asset reads them all.
        """
        query = sql.SQL("SELECT tag_id, tag_name, key FROM {} WHERE source = %s {}").format(
            self.tables.tags,
            sql.SQL("AND measurement = %s") if measurement is not None else sql.SQL(""),
        )
        params = [self.source] if measurement is None else [self.source, measurement]
        return self._cached(conn.execute(query, params).fetchall())

    def lookup(self, conn: psycopg.Connection, signals: Iterable[Signal]) -> list[RegisteredSignal]:
        """The registry rows of those of `signals` that are registered, read by their key.

        Signals already cached for the run cost no query; the others are read in one query on
        the registry's unique key, and those found are cached for the run.
        """
        wanted = list(dict.fromkeys(signals))
        uncached = {s.key: s for s in wanted if s not in self._by_signal}
        if uncached:
            rows = conn.execute(
                # The key names the source: `key` alone keeps the planner on its unique index.
                sql.SQL("SELECT tag_id, tag_name, key FROM {} WHERE key = ANY(%s)").format(
                    self.tables.tags
                ),
                [list(uncached)],
            ).fetchall()
            for tag_id, tag_name, key in rows:
                signal = uncached[key]
                registered = RegisteredSignal(tag_id, tag_name, signal)
                self._by_signal[signal] = self._by_key[key] = registered
        return [self._by_signal[s] for s in wanted if s in self._by_signal]

    def holding(
        self, conn: psycopg.Connection, measurement: str, window: Window
    ) -> list[RegisteredSignal]:
        """The source's registered signals of `measurement` with rows in `window`.

        The tag_ids come from the value table's rows of the window (its time index: the
        BRIN index, or the hypertable's chunks), then only their registry rows are read, by
        primary key (the CTE keeps the planner from reaching them through the source's rows):
        the cost follows the window's rows, not the registry's size. A signal that no longer sends
        data is found as long as it has rows in the window.
        """
        rows = conn.execute(
            sql.SQL(
                """
                WITH held AS MATERIALIZED (
                    SELECT tag_id, tag_name, key, source, measurement FROM {tags}
                    WHERE tag_id = ANY(ARRAY(
                        SELECT DISTINCT tag_id FROM {hist} WHERE ts >= %s AND ts < %s
                    ))
                )
                SELECT tag_id, tag_name, key FROM held WHERE source = %s AND measurement = %s
                """
            ).format(tags=self.tables.tags, hist=self.tables.hist),
            [window.start, window.end, self.source, measurement],
        ).fetchall()
        return self._cached(rows)

    def without_values(
        self, conn: psycopg.Connection, signals: Sequence[RegisteredSignal]
    ) -> list[Signal]:
        """Those of `signals` that hold no row at all in the value table: registered but never
        carrying a value (as the old series x field discovery registered them), or whose every
        value is gone. One probe of the (tag_id, ts) index per signal."""
        if not signals:
            return []
        rows = conn.execute(
            sql.SQL(
                "SELECT t.id FROM unnest(%s::integer[]) AS t(id) "
                "WHERE NOT EXISTS (SELECT 1 FROM {hist} h WHERE h.tag_id = t.id)"
            ).format(hist=self.tables.hist),
            [[s.tag_id for s in signals]],
        ).fetchall()
        empty = {tag_id for (tag_id,) in rows}
        return [s.signal for s in signals if s.tag_id in empty]

    def ensure(
        self,
        conn: psycopg.Connection,
        signals: Iterable[Signal],
        types: FieldTypes | None = None,
    ) -> list[RegisteredSignal]:
        """Register the signals not yet known (in their own short transaction) and return all.

        Signals not cached for the run are first looked up by key (`lookup`): only those
        missing from the registry are inserted.
        """
        wanted = list(dict.fromkeys(signals))
        if any(s not in self._by_signal for s in wanted):
            self.lookup(conn, wanted)
            missing = [s for s in wanted if s not in self._by_signal]
            if missing:
                self._insert(conn, self._named(missing), types or {})
        return [self._by_signal[s] for s in wanted]

    def _cached(self, rows: Sequence[tuple[int, str, str]]) -> list[RegisteredSignal]:
        """Registry rows (tag_id, tag_name, key) as registered signals, cached for the run.

        A signal already cached is reused unless its row changed (e.g. renamed); others are
        decoded from the key's JSON, cheaper to fetch than the jsonb tags.
        """
        out = []
        by_key = self._by_key
        for tag_id, tag_name, key in rows:
            registered = by_key.get(key)
            if registered is None or registered.tag_id != tag_id or registered.tag_name != tag_name:
                _source, meas, tags, fld = json.loads(key)
                signal = Signal(
                    self.source, meas, tuple(sorted((str(k), str(v)) for k, v in tags)), fld
                )
                registered = by_key[key] = RegisteredSignal(tag_id, tag_name, signal)
                self._by_signal[signal] = registered
            out.append(registered)
        return out

    def update_types(
        self, conn: psycopg.Connection, field_types: FieldTypes
    ) -> list[dict[str, str]]:
        """Record each field's current type(s); return the changes against what was recorded.

        The rows to update are found on the (source, measurement, field, tag_type) index, one
        range scan below and one above each field's type (and its untyped rows): with no
        change nothing of the registry is read, however many signals a field has.
        """
        if not field_types:
            return []
        rows = conn.execute(
            sql.SQL(
                """
                WITH cur(measurement, field, tag_type) AS (
                    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
                ), stale AS (
                    SELECT s.tag_id, cur.tag_type FROM cur CROSS JOIN LATERAL (
                        SELECT tag_id FROM {tags} WHERE source = %s
                          AND measurement = cur.measurement AND field = cur.field
                          AND tag_type IS NULL
                        UNION ALL
                        SELECT tag_id FROM {tags} WHERE source = %s
                          AND measurement = cur.measurement AND field = cur.field
                          AND tag_type < cur.tag_type
                        UNION ALL
                        SELECT tag_id FROM {tags} WHERE source = %s
                          AND measurement = cur.measurement AND field = cur.field
                          AND tag_type > cur.tag_type
                    ) s
                )
                UPDATE {tags} t SET tag_type = stale.tag_type, updated_at = now(),
                       meta = t.meta || jsonb_build_object('previous_type', t.tag_type)
                FROM stale
                WHERE t.tag_id = stale.tag_id
                RETURNING t.measurement, t.field, t.meta->>'previous_type', t.tag_type
                """
            ).format(tags=self.tables.tags),
            [
                [m for m, _ in field_types],
                [f for _, f in field_types],
                list(field_types.values()),
                self.source,
                self.source,
                self.source,
            ],
        ).fetchall()
        changes = {
            (m, f): {"measurement": m, "field": f, "from": old, "to": new}
            for m, f, old, new in rows
            if old is not None
        }
        return [changes[k] for k in sorted(changes)]

    def mark_removed(
        self, conn: psycopg.Connection, removed: Sequence[Signal], found: set[Signal]
    ) -> None:
        """Stamp signals that disappeared from the source; clear the stamp of those that came back."""
        conn.execute(
            sql.SQL(
                "UPDATE {} SET removed_at = CASE WHEN key = ANY(%s) "
                "THEN coalesce(removed_at, now()) ELSE NULL END, updated_at = now() "
                "WHERE source = %s AND (key = ANY(%s) OR (removed_at IS NOT NULL AND key = ANY(%s)))"
            ).format(self.tables.tags),
            [
                [s.key for s in removed],
                self.source,
                [s.key for s in removed],
                [s.key for s in found],
            ],
        )

    def _named(self, signals: list[Signal]) -> list[tuple[Signal, str]]:
        """The new signals with their names, refusing empty or shared names."""
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
        return named

    def _insert(
        self, conn: psycopg.Connection, named: list[tuple[Signal, str]], types: FieldTypes
    ) -> None:
        """Insert the named signals (existing keys are kept) and cache their registry rows."""
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
                sql.SQL("SELECT key, tag_id, tag_name FROM {} WHERE key = ANY(%s)").format(
                    self.tables.tags
                ),
                [keys],
            ).fetchall()
        by_key = {k: (tag_id, name) for k, tag_id, name in rows}
        for signal, _ in named:
            tag_id, name = by_key[signal.key]
            registered = self._by_signal[signal] = RegisteredSignal(tag_id, name, signal)
            self._by_key[signal.key] = registered
