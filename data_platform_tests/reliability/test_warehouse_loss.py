"""The warehouse lost after its pool exists: callers fail within the connect timeout, not the
pool's, and the pool recovers once the server is back."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from data_platform.lib.warehouse import WarehouseResource, WarehouseUnavailable
from data_platform.utils.local_servers import LocalPostgres

pytestmark = pytest.mark.integration

# What a caller may take to learn the server is gone: the connect timeout (2 s here) plus a
# generous margin for a loaded machine. The pool's own wait (60 s) must never be reached.
BUDGET_S = 12.0


def resource(server: LocalPostgres) -> WarehouseResource:
    return WarehouseResource(
        url=server.url, connect_timeout_seconds=2, pool_timeout_seconds=60, max_connections=2
    )


def timed_failure(warehouse: WarehouseResource) -> tuple[float, str]:
    started = time.monotonic()
    with pytest.raises(WarehouseUnavailable) as failure, warehouse.connection() as conn:
        conn.execute("SELECT 1")
    return time.monotonic() - started, str(failure.value)


def test_a_server_stopped_between_uses_fails_within_the_connect_timeout(
    private_postgres: LocalPostgres,
) -> None:
    warehouse = resource(private_postgres)
    with warehouse.connection() as conn:  # the pool exists and holds an idle connection
        conn.execute("SELECT 1")
    private_postgres.stop_immediately()

    elapsed, message = timed_failure(warehouse)
    assert elapsed < BUDGET_S, f"took {elapsed:.1f}s"
    assert "is unreachable" in message
    assert "Check WAREHOUSE_URL" in message

    private_postgres.start()
    with warehouse.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_lost_during_a_statement_makes_the_next_caller_fail_at_once(
    private_postgres: LocalPostgres,
) -> None:
    warehouse = resource(private_postgres)
    lost: list[BaseException] = []

    def long_statement() -> None:
        try:
            with warehouse.connection() as conn:
                conn.execute("SELECT pg_sleep(30)")
        except BaseException as exc:
            lost.append(exc)

    worker = threading.Thread(target=long_statement)
    worker.start()
    time.sleep(1.0)
    private_postgres.stop_immediately()
    worker.join(timeout=BUDGET_S)
    assert not worker.is_alive()
    assert lost and isinstance(lost[0], WarehouseUnavailable | psycopg.OperationalError)

    elapsed, message = timed_failure(warehouse)
    # The pool was marked by the lost statement: the next caller asks the server at once.
    assert elapsed < 3.0, f"took {elapsed:.1f}s"
    assert "is unreachable" in message

    private_postgres.start()
    with warehouse.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_busy_connections_are_waited_for_up_to_the_pool_timeout(
    private_postgres: LocalPostgres,
) -> None:
    """A reachable server with every connection busy is waited for, not reported down."""
    warehouse = WarehouseResource(
        url=private_postgres.url,
        connect_timeout_seconds=2,
        pool_timeout_seconds=5,
        max_connections=1,
    )
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with warehouse.connection() as conn:
            conn.execute("SELECT 1")
            held.set()
            release.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    threading.Timer(3.0, release.set).start()  # freed after the quick wait, within the pool's
    started = time.monotonic()
    with warehouse.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert 2.5 < time.monotonic() - started < 5.0
    holder.join()

    release.clear()
    held.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    elapsed, message = timed_failure(warehouse)
    release.set()
    holder.join()
    assert 4.5 < elapsed < BUDGET_S
    assert "all 1 connections busy" in message


def test_timeouts_are_validated() -> None:
    with pytest.raises(ValueError, match="connect_timeout_seconds"):
        WarehouseResource(url="postgresql://x", connect_timeout_seconds=0)
    with pytest.raises(ValueError, match="pool_timeout_seconds"):
        WarehouseResource(url="postgresql://x", pool_timeout_seconds=-1)
