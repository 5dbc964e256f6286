"""The signal registry on a real PostgreSQL: ids on sight, current types, removed signals."""

from __future__ import annotations

import psycopg
import pytest

from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables

pytestmark = pytest.mark.integration

TABLES = HistorianTables("raw")
P = Signal("src", "m", (("device", "a"),), "p")
Q = Signal("src", "m", (("device", "a"),), "q")


def registry_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT field, tag_type, meta->>'previous_type', removed_at IS NOT NULL "
        "FROM raw.influx_tag ORDER BY field"
    ).fetchall()


def test_types_are_recorded_and_changes_reported(pg_conn: psycopg.Connection) -> None:
    ensure_tables(pg_conn, TABLES)
    registry = SignalRegistry("src", TABLES, Signal.default_name)
    ids = [r.tag_id for r in registry.ensure(pg_conn, [P, Q], {("m", "p"): "float"})]
    assert len(set(ids)) == 2
    assert registry.update_types(pg_conn, {}) == []
    changes = registry.update_types(pg_conn, {("m", "p"): "integer", ("m", "q"): "string"})
    # A field seen for the first time is recorded, not reported as a change.
    assert changes == [{"measurement": "m", "field": "p", "from": "float", "to": "integer"}]
    assert registry_rows(pg_conn) == [
        ("p", "integer", "float", False),
        ("q", "string", None, False),
    ]
    assert (
        SignalRegistry("src", TABLES, Signal.default_name).ensure(pg_conn, [Q, P])[1].tag_id
        == ids[0]
    )


def test_a_type_change_reaches_every_signal_of_the_field(pg_conn: psycopg.Connection) -> None:
    ensure_tables(pg_conn, TABLES)
    registry = SignalRegistry("src", TABLES, Signal.default_name)
    sites = [Signal("src", "m", (("site", f"s{n}"),), "p") for n in range(50)]
    registry.ensure(pg_conn, sites, {("m", "p"): "string"})
    registry.ensure(pg_conn, [P])  # registered during a stream: no type yet
    assert registry.update_types(pg_conn, {("m", "p"): "string"}) == []
    # A type sorting before the recorded one, then after it: both are found and recorded.
    for old, new in (("string", "float"), ("float", "integer")):
        changes = registry.update_types(pg_conn, {("m", "p"): new})
        assert changes == [{"measurement": "m", "field": "p", "from": old, "to": new}]
        assert pg_conn.execute(
            "SELECT tag_type, count(*) FROM raw.influx_tag GROUP BY tag_type"
        ).fetchall() == [(new, 51)]


def test_removed_signals_are_stamped_until_they_come_back(pg_conn: psycopg.Connection) -> None:
    ensure_tables(pg_conn, TABLES)
    registry = SignalRegistry("src", TABLES, Signal.default_name)
    registry.ensure(pg_conn, [P, Q])
    registry.mark_removed(pg_conn, [Q], {P})
    assert [r[3] for r in registry_rows(pg_conn)] == [False, True]
    stamped = pg_conn.execute("SELECT removed_at FROM raw.influx_tag WHERE field = 'q'").fetchone()
    registry.mark_removed(pg_conn, [Q], {P})
    again = pg_conn.execute("SELECT removed_at FROM raw.influx_tag WHERE field = 'q'").fetchone()
    assert again == stamped  # the first disappearance is kept
    registry.mark_removed(pg_conn, [], {P, Q})
    assert [r[3] for r in registry_rows(pg_conn)] == [False, False]


def test_load_decodes_signals_and_follows_renamed_rows(pg_conn: psycopg.Connection) -> None:
    ensure_tables(pg_conn, TABLES)
    unsorted = Signal("src", "m", (("z", "1"), ("device", "b \u00e9,=")), "p")
    written = SignalRegistry("src", TABLES, Signal.default_name)
    ids = {r.signal: r.tag_id for r in written.ensure(pg_conn, [P, Q, unsorted])}
    cold = SignalRegistry("src", TABLES, Signal.default_name)
    loaded = {r.signal: (r.tag_id, r.tag_name) for r in cold.load(pg_conn)}
    assert set(loaded) == {P, Q, Signal("src", "m", tuple(sorted(unsorted.tags)), "p")}
    assert loaded[P] == (ids[P], P.default_name())
    # A row renamed since the last load comes back renamed, not from the run's cache.
    pg_conn.execute("UPDATE raw.influx_tag SET tag_name = 'renamed' WHERE tag_id = %s", [ids[Q]])
    again = {r.signal: r.tag_name for r in cold.load(pg_conn, "m")}
    assert again[Q] == "renamed"
    assert cold.ensure(pg_conn, [Q])[0].tag_name == "renamed"
