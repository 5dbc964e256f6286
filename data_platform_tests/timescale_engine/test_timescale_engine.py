"""The TimescaleDB test engine, seen from psycopg 3 as the platform uses it."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, LiteralString, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform_tests.timescale_engine import (
    connect_kwargs,
    start_timescale_engine,
)

pytestmark = pytest.mark.timescale

T = TypeVar("T")
# Any single step of these tests finishes in well under this; more means the server hangs.
HANG = 60.0


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, **connect_kwargs(), **kwargs)


class Background(Generic[T]):
    """`work` on a daemon thread, so a server that stops answering fails the test, not hangs it."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._outcome["value"] = work()
        except BaseException as error:
            self._outcome["error"] = error

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = HANG) -> T:
        self._thread.join(timeout)
        if self._thread.is_alive():
            pytest.fail(f"no answer within {timeout}s: the engine hangs")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def within(seconds: float, work: Callable[[], T]) -> T:
    return Background(work).result(seconds)


def create_hypertable(conn: psycopg.Connection[Any], name: str) -> None:
    """The historian's value table `public.<name>` as a hypertable in 1-day chunks."""
    ensure_tables(conn, HistorianTables("public", name, chunk_interval="1 day"), registry=False)


def test_timescaledb_extension_is_installed(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert row is not None
        assert row[0].startswith("2.")
        assert conn.info.server_version >= 170000
        assert conn.info.parameter_status("client_encoding") == "UTF8"


def test_parameterised_queries(timescale_url: str) -> None:
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    with connect(timescale_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT %s::int + %s, %s::text, %s::timestamptz, %s::float8, %s::int[], %s::text IS NULL",
            [40, 2, "ünï", at, 1.5, [1, 2], None],
        ).fetchone()
        assert row == (42, "ünï", at, 1.5, [1, 2], True)
        binary = conn.cursor(binary=True).execute("SELECT %s::bytea", [b"\x00\xff"]).fetchone()
        assert binary == (b"\x00\xff",)


@pytest.mark.parametrize("near", [8192, 16384])
def test_messages_ending_on_receive_block_boundaries(timescale_url: str, near: int) -> None:
    """A batch with a message ending on a multiple of 8 KiB must not lose what follows."""

    def lengths() -> list[int]:
        with connect(timescale_url, autocommit=True) as conn:
            return [
                scalar(conn, "SELECT length(%s)", ["x" * length])
                for length in range(near - 100, near + 10)
            ]

    assert within(HANG, lengths) == list(range(near - 100, near + 10))


def test_pipelined_executemany(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pipelined (id int PRIMARY KEY, label text)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO pipelined VALUES (%s, %s)", [(i, f"row {i}") for i in range(2000)]
            )
        assert conn.execute("SELECT count(*), sum(id) FROM pipelined").fetchone() == (
            2000,
            sum(range(2000)),
        )


def test_binary_copy_into_a_hypertable(timescale_url: str) -> None:
    rows = 200_000
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with connect(timescale_url, autocommit=True) as conn:
        create_hypertable(conn, "copied")
        began = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY copied (ts, tag_id, value) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["timestamptz", "int4", "float8"])
            for i in range(rows):
                copy.write_row((start + dt.timedelta(seconds=10 * i), i % 10, float(i)))
        elapsed = time.perf_counter() - began
        assert conn.execute("SELECT count(*), sum(value) FROM copied").fetchone() == (
            rows,
            float(sum(range(rows))),
        )
        chunks = conn.execute("SELECT count(*) FROM show_chunks('copied')").fetchone()
        assert chunks is not None and chunks[0] == 24

        began = time.perf_counter()
        for i in range(200):
            conn.execute(
                "SELECT value FROM copied WHERE ts = %s", [start + dt.timedelta(seconds=10 * i)]
            )
        latency = (time.perf_counter() - began) / 200
        print(f"\nbinary COPY: {rows / elapsed:,.0f} rows/s; point query: {latency * 1000:.2f} ms")


def test_text_copy_in_and_out(timescale_url: str) -> None:
    with connect(timescale_url) as conn:
        conn.execute("CREATE TABLE copied_text (id int, label text)")
        with conn.cursor().copy(
            "COPY copied_text FROM STDIN WITH (FORMAT csv, DELIMITER ';')"
        ) as copy:
            copy.write("1;one\n2;two\n")
        conn.commit()
        with conn.cursor().copy("COPY (SELECT * FROM copied_text ORDER BY id) TO STDOUT") as copy:
            assert b"".join(bytes(block) for block in copy) == b"1\tone\n2\ttwo\n"


def test_copy_errors_leave_the_connection_usable(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as conn:
        with (
            pytest.raises(psycopg.errors.UndefinedTable),
            conn.cursor().copy("COPY no_such_table FROM STDIN") as copy,
        ):
            copy.write("1\n")
        conn.execute("CREATE TABLE copy_errors (id int)")
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation),
            conn.cursor().copy("COPY copy_errors FROM STDIN") as copy,
        ):
            copy.write("not a number\n")
        # COPY inside a transaction: a failure aborts it, a success keeps it open.
        with conn.transaction():
            with conn.cursor().copy("COPY copy_errors FROM STDIN") as copy:
                copy.write("1\n2\n")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SELECT count(*) FROM copy_errors").fetchone() == (2,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_continuous_aggregate_with_real_time_rows(timescale_url: str) -> None:
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    readings = [
        (start + dt.timedelta(minutes=minute), tag, float(minute * tag))
        for minute in range(48 * 60)
        for tag in (1, 2)
    ]
    with connect(timescale_url, autocommit=True) as conn:
        create_hypertable(conn, "measured")
        with conn.cursor().copy("COPY measured (ts, tag_id, value) FROM STDIN") as copy:
            for reading in readings:
                copy.write_row(reading)
        conn.execute(
            """
            CREATE MATERIALIZED VIEW measured_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, tag_id,
                   avg(value) AS mean, count(*) AS samples
            FROM measured GROUP BY bucket, tag_id
            WITH NO DATA
            """
        )
        conn.execute(
            "CALL refresh_continuous_aggregate('measured_hourly', %s, %s)",
            [start, start + dt.timedelta(days=2)],
        )
        rows = conn.execute(
            "SELECT bucket, tag_id, mean, samples FROM measured_hourly ORDER BY bucket, tag_id"
        ).fetchall()
        assert len(rows) == 48 * 2
        assert rows[0] == (start, 1, 29.5, 60)
        assert rows[-1] == (start + dt.timedelta(hours=47), 2, 2 * (47 * 60 + 29.5), 60)
        # Rows newer than the last refresh still appear (materialized_only = false).
        conn.execute("INSERT INTO measured VALUES (%s, 1, 1000.0)", [start + dt.timedelta(days=3)])
        late = conn.execute(
            "SELECT mean, samples FROM measured_hourly WHERE bucket = %s",
            [start + dt.timedelta(days=3)],
        ).fetchone()
        assert late == (1000.0, 1)


def test_policies_run_with_run_job(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as conn:
        create_hypertable(conn, "policed")
        # One reading per tag every 10 minutes over the last 30 days.
        conn.execute(
            """
            INSERT INTO policed
            SELECT ts, tag_id, 1.0
            FROM generate_series(now() - INTERVAL '30 days', now(), INTERVAL '10 minutes') ts,
                 generate_series(1, 3) tag_id
            """
        )
        conn.execute(
            """
            CREATE MATERIALIZED VIEW policed_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 day', ts) AS bucket, tag_id, count(*) AS samples
            FROM policed GROUP BY bucket, tag_id
            WITH NO DATA
            """
        )
        refresh_job = scalar(
            conn,
            "SELECT add_continuous_aggregate_policy('policed_daily', start_offset => NULL, "
            "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')",
        )
        location = conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name "
            "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'policed_daily'"
        ).fetchone()
        assert location is not None
        count_materialized = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*location))
        assert scalar(conn, count_materialized) == 0
        conn.execute("CALL run_job(%s)", [refresh_job])
        assert scalar(conn, count_materialized) >= 28 * 3  # whole days before the end offset

        conn.execute(
            "ALTER TABLE policed SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'tag_id')"
        )
        conn.execute("CALL add_columnstore_policy('policed', after => INTERVAL '7 days')")
        columnstore_job = scalar(
            conn,
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'policed' AND proc_name = 'policy_compression'",
        )
        before = conn.execute("SELECT count(*), sum(value) FROM policed").fetchone()
        conn.execute("CALL run_job(%s)", [columnstore_job])
        compressed = scalar(
            conn,
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'policed' AND is_compressed",
        )
        assert compressed >= 20
        assert conn.execute("SELECT count(*), sum(value) FROM policed").fetchone() == before

        recent = "SELECT count(*) FROM policed WHERE ts > now() - INTERVAL '19 days'"
        recent_before = scalar(conn, recent)
        retention_job = scalar(
            conn, "SELECT add_retention_policy('policed', drop_after => INTERVAL '20 days')"
        )
        conn.execute("CALL run_job(%s)", [retention_job])
        assert scalar(conn, "SELECT min(ts) > now() - INTERVAL '21 days' FROM policed") is True
        assert scalar(conn, recent) == recent_before
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'policed' "
                "AND range_end < now() - INTERVAL '20 days'",
            )
            == 0
        )


def scalar(
    conn: psycopg.Connection[Any], query: LiteralString | sql.Composed, params: Sequence[Any] = ()
) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_concurrent_transactions_from_eight_connections(timescale_url: str) -> None:
    workers, transactions, rows_per_transaction = 8, 25, 4
    with connect(timescale_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE concurrent (worker int, n int, ts timestamptz DEFAULT now())")

    def work(worker: int) -> int:
        seen = 0
        with connect(timescale_url) as conn:
            for t in range(transactions):
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO concurrent (worker, n) VALUES (%s, %s)",
                            [
                                (worker, t * rows_per_transaction + i)
                                for i in range(rows_per_transaction)
                            ],
                        )
                    row = conn.execute(
                        "SELECT count(*) FROM concurrent WHERE worker = %s", [worker]
                    ).fetchone()
                    assert row is not None
                    seen = row[0]
                    assert seen == (t + 1) * rows_per_transaction
        return seen

    def run_all() -> list[int]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(work, range(workers)))

    assert within(HANG, run_all) == [transactions * rows_per_transaction] * workers
    with connect(timescale_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT worker) FROM concurrent"
        ).fetchone() == (
            workers * transactions * rows_per_transaction,
            workers,
        )


def test_connection_pool(timescale_url: str) -> None:
    with ConnectionPool(
        timescale_url, min_size=2, max_size=8, kwargs=connect_kwargs(), open=True
    ) as pool:

        def work(i: int) -> int:
            with pool.connection() as conn:
                row = conn.execute("SELECT %s::int * 2", [i]).fetchone()
                assert row is not None
                return row[0]

        def run_all() -> list[int]:
            with ThreadPoolExecutor(max_workers=8) as threads:
                return list(threads.map(work, range(200)))

        assert within(HANG, run_all) == [i * 2 for i in range(200)]


def test_rolled_back_transaction_is_invisible_to_other_connections(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE rolled_back (id int)")
    with connect(timescale_url) as writer, connect(timescale_url, autocommit=True) as reader:
        writer.execute("INSERT INTO rolled_back VALUES (1)")
        assert writer.execute("SELECT count(*) FROM rolled_back").fetchone() == (1,)
        # The engine serves the reader once the writer's transaction ends.
        counted = Background(lambda: scalar(reader, "SELECT count(*) FROM rolled_back"))
        time.sleep(0.3)
        assert not counted.done()
        writer.rollback()
        assert counted.result() == 0
        assert writer.execute("SELECT count(*) FROM rolled_back").fetchone() == (0,)


def drop_connection(conn: psycopg.Connection[Any]) -> None:
    """Cut the TCP connection under psycopg, as a crashed client would (no Terminate message)."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def test_client_leaving_mid_transaction_does_not_wedge_the_server(timescale_url: str) -> None:
    with connect(timescale_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE abandoned (id int)")

    crashed = connect(timescale_url)
    crashed.execute("INSERT INTO abandoned VALUES (1)")
    drop_connection(crashed)

    closed = connect(timescale_url)
    closed.execute("INSERT INTO abandoned VALUES (2)")
    closed.close()  # Terminate while in a transaction: the server rolls back

    copying = connect(timescale_url, autocommit=True)
    # Entered and never exited (kept referenced): the client goes away in the middle of the COPY.
    copy_block = copying.cursor().copy("COPY abandoned FROM STDIN")
    copy_block.__enter__().write("3\n")
    drop_connection(copying)

    def count_and_status() -> tuple[Any, psycopg.pq.TransactionStatus]:
        with connect(timescale_url, autocommit=True) as conn:
            return scalar(conn, "SELECT count(*) FROM abandoned"), conn.info.transaction_status

    assert within(HANG, count_and_status) == (0, psycopg.pq.TransactionStatus.IDLE)
    for leftover in (crashed, copying):
        leftover.close()


def test_reopened_data_dir_keeps_rows_and_compressed_chunks(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    with start_timescale_engine(data_dir) as engine, engine.connect(autocommit=True) as conn:
        assert engine.url == (
            f"postgresql://postgres:postgres@127.0.0.1:{engine.port}/postgres?sslmode=disable"
        )
        assert engine.process.poll() is None
        create_hypertable(conn, "kept")
        conn.execute(
            """
            INSERT INTO kept
            SELECT ts, tag_id, tag_id * 10
            FROM generate_series('2024-01-01'::timestamptz, '2024-01-10', INTERVAL '10 minutes') ts,
                 generate_series(1, 2) tag_id
            """
        )
        conn.execute(
            "ALTER TABLE kept SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'tag_id')"
        )
        conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('kept', older_than => '2024-01-06'::timestamptz) c"
        )
        expected = conn.execute("SELECT count(*), sum(value) FROM kept").fetchone()
        compressed = scalar(conn, _COMPRESSED_CHUNKS)
        assert compressed == 5

    assert engine.process.returncode == 0

    with start_timescale_engine(data_dir) as engine, engine.connect(autocommit=True) as conn:
        assert conn.execute("SELECT count(*), sum(value) FROM kept").fetchone() == expected
        assert scalar(conn, _COMPRESSED_CHUNKS) == compressed
        assert scalar(conn, "SELECT count(*) FROM kept WHERE ts < '2024-01-06'") > 0


_COMPRESSED_CHUNKS = (
    "SELECT count(*) FROM timescaledb_information.chunks "
    "WHERE hypertable_name = 'kept' AND is_compressed"
)
