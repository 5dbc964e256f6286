"""The vectorised COPY encoder and row checks against the per-value ones they stand in for."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest

from data_platform.lib.historian import vectors
from data_platform.lib.historian.copy import NS_META, PG_EPOCH_US, ValueCopy
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import RegisteredSignal, Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import _WindowStream, replace_window
from data_platform.lib.influx.reader.model import FieldValue, SeriesBatch
from data_platform.lib.timing.window import Window

T0_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
EARLY_NS = -300 * 86_400 * 1_000_000_000  # 1969
LATE_NS = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000 - 1
WIDE = Window(datetime(1960, 1, 1, tzinfo=UTC), datetime(2200, 1, 2, tzinfo=UTC))


class Sink:
    """Collects what a COPY would send."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, buffer: bytes | bytearray) -> None:
        self.data += buffer


def mixed_rows(n: int = 300) -> list[list[FieldValue]]:
    """Floats, ints, bools, strings, None, NaN, infinities, ns remainders, extreme times."""
    steps = [EARLY_NS, *(T0_NS + i * 1_000_003 for i in range(1, n - 1)), LATE_NS]
    rows: list[list[FieldValue]] = []
    for i, ts in enumerate(steps):
        rows.append(
            [
                ts,
                [1.5 * i, float("nan"), float("-inf"), -0.0, 1e308, None][i % 6],
                [i, -(2**63), 2**64 + 1, 2**53 + 1, None][i % 5],
                [True, False, None][i % 3],
                [f"ünï {i}", "", None, "x" * 300][i % 4],
                [i * 0.25, True, 3][i % 3],  # a field with two numeric types
            ]
        )
    return rows


def per_value_bytes(tag_ids: list[int], rows: list[list[FieldValue]]) -> bytes:
    sink = Sink()
    out = ValueCopy(cast(psycopg.Copy, sink))
    stamps = [cast(int, r[0]) // 1000 - PG_EPOCH_US for r in rows]
    metas = [NS_META % (cast(int, r[0]) % 1000) if cast(int, r[0]) % 1000 else None for r in rows]
    out.write_columns(tag_ids, rows, stamps, metas)
    out.finish()
    return bytes(sink.data)


def vector_bytes(tag_ids: list[int], rows: list[list[FieldValue]]) -> bytes:
    sink = Sink()
    out = ValueCopy(cast(psycopg.Copy, sink))
    ns = vectors.nanoseconds([r[0] for r in rows])
    assert ns is not None
    us = ns // 1000
    vectors.write_batch(out, tag_ids, rows, us, ns - us * 1000)
    out.finish()
    return bytes(sink.data)


@pytest.mark.parametrize("remainders", [True, False])
def test_vector_bytes_equal_the_per_value_encoder_on_mixed_data(remainders: bool) -> None:
    rows = mixed_rows()
    if not remainders:
        for row in rows:
            row[0] = cast(int, row[0]) // 1000 * 1000
    tag_ids = [7, 2**31 - 1, 1, 40, 5]
    expected = per_value_bytes(tag_ids, rows)
    assert vector_bytes(tag_ids, rows) == expected
    assert (b'{"ns": ' in expected) is remainders


def test_a_float_only_batch_encodes_to_the_same_bytes() -> None:
    rows: list[list[FieldValue]] = [[T0_NS + i * 1000, i * 0.1, -i * 3.0] for i in range(5000)]
    assert vector_bytes([3, 4], rows) == per_value_bytes([3, 4], rows)


def test_text_and_odd_timestamps_are_left_to_the_per_value_path() -> None:
    assert vectors.number_column(("a", 1.0)) is None
    assert vectors.number_column(("1.5",)) is None  # numpy would parse it as a number
    assert vectors.nanoseconds([T0_NS, True]) is None
    assert vectors.nanoseconds([T0_NS, 2**63]) is None
    numbers = vectors.number_column((1.0, None, float("nan"), True))
    assert numbers is not None
    floats, index = numbers
    assert index.tolist() == [0, 2, 3]
    assert floats[0] == 1.0 and math.isnan(floats[1]) and floats[2] == 1.0


def stream(on_collision: str = "fail") -> _WindowStream:
    registry = SignalRegistry("src", HistorianTables("raw"), Signal.default_name)
    return _WindowStream(registry, WIDE, cast(Any, None), on_collision)


def registered(batch: SeriesBatch) -> list[RegisteredSignal]:
    return [
        RegisteredSignal(i, c, Signal("src", batch.measurement, batch.tags, c))
        for i, c in enumerate(batch.columns)
    ]


def test_vector_checks_time_series_as_the_row_checks_do() -> None:
    # Three chunks of one series with irregular steps and a long silence in the second chunk.
    times = [T0_NS + i * 1_000_000 + (i % 7) * 1_001 for i in range(600)]
    times[400:] = [t + 3_600 * 10**9 for t in times[400:]]
    chunks = [times[:200], times[200:450], times[450:]]
    fast, slow = stream(), stream()
    for chunk in chunks:
        batch = SeriesBatch("m", (("site", "a"),), ("v",), [[t, 1.0] for t in chunk])
        got = fast._check_vectors(batch, registered(batch))
        assert got is not None
        stamps, metas = slow._check_rows(batch, registered(batch))
        us, rest = got
        assert (us - PG_EPOCH_US).tolist() == stamps
        assert [NS_META % r if r else None for r in rest.tolist()] == metas
    assert fast.result.timings == slow.result.timings
    timing = next(iter(fast.result.timings.values()))
    assert timing.rows == 600 and timing.longest_from_us == times[399] // 1000


@pytest.mark.parametrize(
    "times",
    [
        [T0_NS + i * 1000 for i in range(100)][::-1],  # out of order
        [T0_NS + i * 1000 + (i == 50) for i in range(100)] + [T0_NS + 99_000],  # a clash
        [T0_NS + i for i in range(0, 100_000, 1000)] + [WIDE.end_ns],  # outside the window
    ],
)
def test_batches_the_vector_checks_refuse_go_to_the_row_checks(times: list[int]) -> None:
    batch = SeriesBatch("m", (), ("v",), [[t, 1.0] for t in times])
    checker = stream()
    assert checker._check_vectors(batch, registered(batch)) is None
    assert checker.result.timings == {}


@pytest.mark.integration
def test_a_long_mixed_batch_round_trips_through_postgres(warehouse_url: str) -> None:
    tables = HistorianTables(schema="vectors")
    rows = mixed_rows(200)
    columns = ("f", "i", "b", "s", "two")
    batch = SeriesBatch("m", (("site", "a"),), columns, [list(r) for r in rows])
    registry = SignalRegistry("src", tables, Signal.default_name)
    with (
        psycopg.connect(warehouse_url) as conn,
        psycopg.connect(warehouse_url, autocommit=True) as reg_conn,
    ):
        ensure_tables(conn, tables)
        conn.commit()
        result = replace_window(
            conn, registry, WIDE, [batch], delete_tag_ids=list, register_conn=reg_conn
        )
        conn.commit()
        got = conn.execute(
            "SELECT t.field, h.ts, h.value, h.value_text, h.meta FROM vectors.influx_hist h "
            "JOIN vectors.influx_tag t USING (tag_id) ORDER BY t.field, h.ts"
        ).fetchall()
    expected = []
    for k, name in enumerate(columns):
        for row in rows:
            value, ts = row[k + 1], cast(int, row[0])
            if value is None:
                continue
            stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts // 1000)
            number = None if isinstance(value, str) else float(value)
            text = value if isinstance(value, str) else None
            meta = {"ns": ts % 1000} if ts % 1000 else None
            expected.append((name, stamp, number, text, meta))
    expected.sort(key=lambda r: (r[0], r[1]))
    assert result.rows == len(expected) == len(got)
    for have, want in zip(got, expected, strict=True):
        same_number = have[2] == want[2] or (
            have[2] is not None
            and want[2] is not None
            and math.isnan(have[2])
            and math.isnan(want[2])
        )
        assert (have[0], have[1], have[3], have[4]) == (want[0], want[1], want[3], want[4])
        assert same_number


@pytest.mark.integration
def test_the_copy_connection_gets_a_send_buffer_of_megabytes(warehouse_url: str) -> None:
    import socket

    from data_platform.lib.historian.copy import SEND_BUFFER_BYTES, widen_send_buffer

    def send_buffer(conn: psycopg.Connection) -> int:
        with socket.fromfd(conn.pgconn.socket, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    with psycopg.connect(warehouse_url) as conn:
        before = send_buffer(conn)
        widen_send_buffer(conn)
        after = send_buffer(conn)
        conn.execute("SELECT 1")  # the connection still works
    cap = int(open("/proc/sys/net/core/wmem_max").read())  # noqa: SIM115
    assert before < SEND_BUFFER_BYTES
    assert after >= min(SEND_BUFFER_BYTES, cap) > before
