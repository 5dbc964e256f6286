"""Faults in the middle of a window: a window is replaced whole or not at all.

Each test first ingests the window from a small version of the source (so the warehouse holds
something to lose), then makes the source much larger and breaks the run while it streams:
influxd killed, PostgreSQL restarted, the run's process killed, the query cut by the server's
timeout. The warehouse must then hold exactly the earlier version (or exactly the new one),
the failure must name the source and the window, and a re-run must complete the window.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.utils.local_servers import LocalInfluxd, LocalPostgres, free_port, start_influxd
from data_platform_tests.helpers import check_results, load_yaml_component, run_assets
from data_platform_tests.reliability import children
from data_platform_tests.reliability.support import (
    HOUR,
    PARTITION,
    assert_window_is_the_source,
    asset,
    copied_rows,
    device_lines,
    failure_text,
    hist_rows,
    on_stream,
    restart_postgres,
    source_attrs,
    write_lines,
)

pytestmark = pytest.mark.integration


def seed_then_grow(
    server: LocalInfluxd, db: str, warehouse_url: str, attrs: dict[str, Any], points: int = 3000
) -> list[tuple[Any, ...]]:
    """Ingest a small version of the window, then write a large one; returns the rows stored.

    The small version has 20 devices with a point a minute; the large one a point every 1.2 s
    (60 k points, 120 k values, 600 batches of 100 points), which rewrites the small one's
    points with other values too.
    """
    write_lines(server, db, device_lines(series=20, points=60))
    with load_yaml_component(attrs) as (_component, defs):
        assert run_assets(defs, warehouse_url, partition_key=PARTITION).success
    before = hist_rows(warehouse_url)
    assert len(before) == 20 * 60 * 2
    write_lines(server, db, device_lines(series=20, points=points, offset=1000.0))
    return before


def run_window(
    attrs: dict[str, Any], warehouse_url: str, *, only_the_window: bool = False
) -> dg.ExecuteInProcessResult:
    """A run of the window (and, unless `only_the_window`, the registry before it)."""
    with load_yaml_component(attrs) as (_component, defs):
        return run_assets(
            defs,
            warehouse_url,
            partition_key=PARTITION,
            raise_on_error=False,
            selection=[asset()] if only_the_window else None,
        )


def assert_completed(
    result: dg.ExecuteInProcessResult, server: LocalInfluxd, db: str, url: str
) -> None:
    assert result.success
    assert check_results(result)[("plant/m", "reconciliation")].passed
    assert_window_is_the_source(server, db, url)


@pytest.mark.parametrize("attempts", [1, 3], ids=["fails", "retried-in-run"])
def test_influxd_killed_mid_stream(
    private_influxd: LocalInfluxd,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
    attempts: int,
) -> None:
    server = private_influxd
    server.create_database("plant")
    before = seed_then_grow(server, "plant", warehouse_url, source_attrs(server.url, "plant"))

    def kill() -> None:
        server.kill()
        if attempts > 1:  # back a moment later, while the run backs off
            threading.Timer(0.3, server.start).start()

    streams = on_stream(monkeypatch, 5, kill)
    attrs = source_attrs(server.url, "plant", max_attempts=attempts, retry_backoff_seconds=1.0)
    result = run_window(attrs, warehouse_url)
    assert streams[0] < 600, "influxd was killed after the stream had ended"

    if attempts == 1:
        assert not result.success
        text = failure_text(result)
        assert "source 'plant'" in text and str(HOUR) in text
        assert "stream broke" in text and "holds what it held before" in text
        assert hist_rows(warehouse_url) == before

        server.start()
        monkeypatch.undo()
        result = run_window(attrs, warehouse_url)
    assert_completed(result, server, "plant", warehouse_url)


@pytest.mark.parametrize("attempts", [1, 2], ids=["fails", "retried-in-run"])
def test_postgres_restarted_during_copy(
    influxd: LocalInfluxd,
    influx_db: str,
    private_postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
    attempts: int,
) -> None:
    url = private_postgres.create_database("warehouse")
    attrs = source_attrs(influxd.url, influx_db, max_attempts=attempts)
    before = seed_then_grow(influxd, influx_db, url, attrs)

    received: list[int] = []

    def restart() -> None:
        received.append(copied_rows(url))
        restart_postgres(private_postgres)

    # 250 batches are 50 k values: the writer has flushed part of the COPY to the server.
    on_stream(monkeypatch, 250, restart)
    result = run_window(attrs, url)
    assert received and received[0] > 0, "no row had reached PostgreSQL before the restart"

    if attempts == 1:
        assert not result.success
        text = failure_text(result)
        assert "source 'plant'" in text and str(HOUR) in text
        assert "warehouse" in text and "unreachable" in text
        assert hist_rows(url) == before

        monkeypatch.undo()
        result = run_window(attrs, url)
    assert_completed(result, influxd, influx_db, url)


def test_run_process_killed_during_copy(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, tmp_path: Path
) -> None:
    attrs = source_attrs(influxd.url, influx_db)
    before = seed_then_grow(influxd, influx_db, warehouse_url, attrs)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    marker = tmp_path / "streaming"

    # The child slows down after 150 batches (30 k values, part of them flushed to the server),
    # so the COPY is still open when it is killed.
    child = multiprocessing.get_context("spawn").Process(
        target=children.run_partition_slowly,
        args=(attrs, warehouse_url, PARTITION, str(home), str(marker), 150, 0.02),
    )
    child.start()
    try:
        deadline = time.monotonic() + 90
        while not (marker.exists() and copied_rows(warehouse_url) > 0):
            assert child.is_alive(), f"the run ended before it was killed ({child.exitcode})"
            assert time.monotonic() < deadline, "the run never started copying"
            time.sleep(0.05)
        child.kill()
        child.join(timeout=10)
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL

    # The server notices the dead client and rolls its transaction back.
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'COPY%%'"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the killed run's COPY is still open"
            time.sleep(0.05)
    assert hist_rows(warehouse_url) == before

    # Nothing claims the window was written: the run is left STARTED (run monitoring fails
    # it in a deployment) and recorded no materialization of the window's asset.
    instance = dg.DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.STARTED
    materialized = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    assert asset() not in {r.asset_key for r in materialized}

    result = run_window(attrs, warehouse_url)
    assert_completed(result, influxd, influx_db, warehouse_url)
    assert asset() in {e.asset_key for e in result.get_asset_materialization_events()}


@pytest.mark.parametrize("wire_format", ["msgpack", "csv"])
def test_query_timeout_cuts_the_window(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, wire_format: str
) -> None:
    server = start_influxd(tmp_path / "influxd", query_timeout="250ms")
    try:
        server.create_database("plant")
        attrs = source_attrs(server.url, "plant", influx={"format": wire_format})
        # Far more than the socket buffers hold, so the server cannot finish the query before
        # the slow consumer has read most of it, however fast the machine is.
        before = seed_then_grow(server, "plant", warehouse_url, attrs, points=20_000)

        # A slower consumer: thousands of batches take seconds, well past the timeout.
        on_stream(monkeypatch, 1, lambda: None, pause_s=0.002)
        # The window alone: the registry's discovery queries could hit the 250 ms limit first
        # on a loaded machine, and this test is about the window's stream.
        result = run_window(attrs, warehouse_url, only_the_window=True)
        assert not result.success
        text = failure_text(result)
        assert "source 'plant'" in text and str(HOUR) in text
        if wire_format == "csv":
            # CSV may hide the server's error; then the count check after the stream finds it.
            assert "cut the stream short" in text or "query-timeout limit exceeded" in text
        else:
            assert "query-timeout limit exceeded" in text and "query timeout" in text
        assert hist_rows(warehouse_url) == before

        monkeypatch.undo()
        server.stop()
        server.query_timeout = "0s"
        server.start()
        result = run_window(attrs, warehouse_url)
        assert_completed(result, server, "plant", warehouse_url)
    finally:
        server.stop()


@pytest.mark.parametrize("fault", ["missing database", "stopped server"])
def test_unreachable_warehouse_fails_at_once_with_its_reason(
    influxd: LocalInfluxd, influx_db: str, postgres: LocalPostgres, fault: str
) -> None:
    """A wrong WAREHOUSE_URL or a stopped server: the run fails in seconds, not after the
    pool's timeout, and says why (the URL shown without its password)."""
    password = "Wh-S3cr3t-canary-pw"
    if fault == "missing database":
        url = postgres.url_for("no_such_database").replace("postgres:@", f"postgres:{password}@")
        reason = 'database "no_such_database" does not exist'
    else:
        url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/warehouse"
        reason = "Connection refused"
    write_lines(influxd, influx_db, device_lines(series=2, points=60))
    started = time.monotonic()
    result = run_window(source_attrs(influxd.url, influx_db), url)
    assert time.monotonic() - started < 30
    assert not result.success
    text = failure_text(result)
    assert "warehouse postgresql://postgres@" in text and reason in text
    assert "Check WAREHOUSE_URL" in text and password not in text
