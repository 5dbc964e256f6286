"""Window replacement on a real PostgreSQL: encoding, atomic replacement, collisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import replace_window
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.timing.window import Window

pytestmark = pytest.mark.integration

TABLES = HistorianTables(schema="raw")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000


def write(conn: psycopg.Connection, window: Window, batches, on_collision: str = "fail"):
    registry = SignalRegistry("src", TABLES, Signal.default_name)
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as reg_conn:

        def known() -> list[int]:
            return [r.tag_id for r in registry.load(reg_conn, "m")]

        return replace_window(
            conn,
            registry,
            window,
            batches,
            delete_tag_ids=known,
            register_conn=reg_conn,
            on_collision=on_collision,
        )


def rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT t.field, h.ts, h.value, h.value_text, h.meta FROM raw.influx_hist h "
        "JOIN raw.influx_tag t USING (tag_id) ORDER BY t.field, h.ts"
    ).fetchall()


@pytest.fixture
def conn(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url) as c:
        ensure_tables(c, TABLES)
        c.commit()
        yield c


WIDE = Window(datetime(1960, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def test_every_value_kind_round_trips_through_binary_copy(conn):
    early = -300 * 86_400 * 1_000_000_000  # 1969
    far = int(datetime(2150, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
    batch = SeriesBatch(
        "m",
        (("site", "a"),),
        ("f", "i", "b", "s"),
        [
            [early, -1.5e300, -(2**53), True, "ünïcode \"' ; --"],
            [T0_NS + 123, float("inf"), 7, False, ""],
            [far, 0.1, None, None, "x" * 10_000],
        ],
    )
    result = write(conn, WIDE, [batch])
    conn.commit()
    assert result.rows == 10
    got = rows(conn)
    by_field = {}
    for field, ts, value, text, meta in got:
        by_field.setdefault(field, []).append((ts, value, text, meta))
    assert by_field["f"][0] == (
        T0 - timedelta(days=300) - (T0 - datetime(1970, 1, 1, tzinfo=UTC)),
        -1.5e300,
        None,
        None,
    )
    assert by_field["f"][1] == (T0, float("inf"), None, {"ns": 123})
    assert by_field["i"] == [
        (datetime(1969, 3, 7, tzinfo=UTC), float(-(2**53)), None, None),
        (T0, 7.0, None, {"ns": 123}),
    ]
    assert [v for _, v, _, _ in by_field["b"]] == [1.0, 0.0]
    assert [t for _, _, t, _ in by_field["s"]] == ["ünïcode \"' ; --", "", "x" * 10_000]
    assert by_field["s"][2][0] == datetime(2150, 6, 1, tzinfo=UTC)


def test_three_points_in_one_microsecond_keep_first_and_count(conn):
    batches = [
        SeriesBatch("m", (), ("v",), [[T0_NS + 1, 1.0], [T0_NS + 2, 2.0]]),
        # The same series continues in the next chunk, with another column order.
        SeriesBatch("m", (), ("w", "v"), [[T0_NS + 3, 9.0, 3.0], [T0_NS + 1000, None, 4.0]]),
    ]
    result = write(conn, WIDE, batches, on_collision="keep_first")
    conn.commit()
    assert result.collisions == 2
    assert [(f, v) for f, _ts, v, _t, _m in rows(conn)] == [("v", 1.0), ("v", 4.0), ("w", 9.0)]


def test_collision_fails_by_default_and_leaves_the_window(conn):
    write(conn, WIDE, [SeriesBatch("m", (), ("v",), [[T0_NS, 5.0]])])
    conn.commit()
    before = rows(conn)
    with pytest.raises(HistorianWriteError, match="same microsecond"):
        write(conn, WIDE, [SeriesBatch("m", (), ("v",), [[T0_NS + 1, 1.0], [T0_NS + 2, 2.0]])])
    conn.rollback()
    assert rows(conn) == before


def test_a_failing_stream_rolls_the_window_back(conn):
    window = Window(T0, T0 + timedelta(hours=1))
    write(
        conn,
        window,
        [SeriesBatch("m", (), ("v",), [[T0_NS + i * 1000, float(i)] for i in range(10)])],
    )
    conn.commit()
    before = rows(conn)

    def broken():
        yield SeriesBatch("m", (), ("v",), [[T0_NS + 5_000_000, 99.0]])
        raise ConnectionError("stream cut")

    with pytest.raises(ConnectionError):
        write(conn, window, broken())
    conn.rollback()
    assert rows(conn) == before


def test_out_of_order_and_out_of_window_points_are_refused(conn):
    window = Window(T0, T0 + timedelta(hours=1))
    with pytest.raises(HistorianWriteError, match="out of time order"):
        write(conn, window, [SeriesBatch("m", (), ("v",), [[T0_NS + 10_000, 1.0], [T0_NS, 2.0]])])
    conn.rollback()
    with pytest.raises(HistorianWriteError, match="outside window"):
        write(conn, window, [SeriesBatch("m", (), ("v",), [[T0_NS - 1, 1.0]])])
    conn.rollback()
    assert rows(conn) == []
