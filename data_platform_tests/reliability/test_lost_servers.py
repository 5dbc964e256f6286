"""A server lost mid-run and kept down: the run gives up within its retry budget and says why.

The budget of a window is its attempts' backoff (`retry_backoff_seconds`, doubling) plus, per
attempt, the time to learn a server is gone: an immediate refusal here, at most the connect
timeout (warehouse 5 s, InfluxDB 10 s) for a host that does not answer. The failure names the
first cause (the COPY or stream cut) and the last (the refused connection), and says the window
holds what it held before.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from data_platform.utils.local_servers import LocalInfluxd, LocalPostgres
from data_platform_tests.helpers import load_yaml_component, run_assets
from data_platform_tests.reliability.support import (
    HOUR,
    PARTITION,
    copied_rows,
    device_lines,
    failure_text,
    hist_rows,
    on_stream,
    source_attrs,
    write_lines,
)

pytestmark = pytest.mark.integration

ATTEMPTS = 3
BACKOFF_S = 1.0
BACKOFF_TOTAL_S = BACKOFF_S * (1 + 2)
# Generous headroom for a loaded 2-core machine: every refusal here is immediate, and the
# pool's 60 s wait (the old behaviour: about 127 s) must be far out of reach.
HEADROOM_S = 20.0


def seed_and_grow(server: LocalInfluxd, db: str, url: str, attrs: dict[str, Any]) -> list[Any]:
    """The window ingested once from a small source, then the source made large."""
    write_lines(server, db, device_lines(series=20, points=60))
    with load_yaml_component(attrs) as (_component, defs):
        assert run_assets(defs, url, partition_key=PARTITION).success
    before = hist_rows(url)
    write_lines(server, db, device_lines(series=20, points=3000, offset=1000.0))
    return before


def run_until_it_gives_up(
    attrs: dict[str, Any], url: str, fault_at: list[float]
) -> tuple[float, str]:
    with load_yaml_component(attrs) as (_component, defs):
        result = run_assets(defs, url, partition_key=PARTITION, raise_on_error=False)
    ended = time.monotonic()
    assert not result.success
    assert fault_at, "the fault was never injected"
    return ended - fault_at[0], failure_text(result)


def assert_names_both_causes(text: str, first: str, last: str) -> None:
    assert "source 'plant'" in text and str(HOUR) in text
    assert f"failed after {ATTEMPTS} attempts" in text
    assert "First cause: " in text and ". Last cause: " in text
    head, _, tail = text.partition(". Last cause: ")
    assert first in head, text
    assert last in tail, text
    assert "holds what it held before this run" in text
    assert ".." not in text


def test_warehouse_stopped_during_a_copy_and_kept_down(
    influxd: LocalInfluxd,
    influx_db: str,
    private_postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = private_postgres.create_database("warehouse")
    attrs = source_attrs(
        influxd.url, influx_db, max_attempts=ATTEMPTS, retry_backoff_seconds=BACKOFF_S
    )
    before = seed_and_grow(influxd, influx_db, url, attrs)
    fault_at: list[float] = []
    received: list[int] = []

    def stop() -> None:
        received.append(copied_rows(url))
        private_postgres.stop_immediately()
        fault_at.append(time.monotonic())

    # 250 batches are 50 k values: part of the COPY has reached the server.
    on_stream(monkeypatch, 250, stop)
    elapsed, text = run_until_it_gives_up(attrs, url, fault_at)
    assert received and received[0] > 0, "no row had reached PostgreSQL before the stop"

    assert elapsed < BACKOFF_TOTAL_S + HEADROOM_S, f"gave up {elapsed:.1f}s after the stop"
    assert_names_both_causes(text, first="server closed the connection", last="unreachable")
    _head, _, tail = text.partition(". Last cause: ")
    assert "No such file or directory" in tail or "refused" in tail, text

    private_postgres.start()
    assert hist_rows(url) == before


def test_influxd_killed_mid_answer_and_kept_down(
    private_influxd: LocalInfluxd, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = private_influxd
    server.create_database("plant")
    attrs = source_attrs(
        server.url, "plant", max_attempts=ATTEMPTS, retry_backoff_seconds=BACKOFF_S
    )
    before = seed_and_grow(server, "plant", warehouse_url, attrs)
    fault_at: list[float] = []

    def kill() -> None:
        server.kill()
        fault_at.append(time.monotonic())

    streams = on_stream(monkeypatch, 5, kill)
    elapsed, text = run_until_it_gives_up(attrs, warehouse_url, fault_at)

    assert elapsed < BACKOFF_TOTAL_S + HEADROOM_S, f"gave up {elapsed:.1f}s after the kill"
    assert_names_both_causes(text, first="stream broke", last="cannot connect")
    # One stream per window attempt: the reader does not retry inside an attempt.
    assert len(streams) == ATTEMPTS, streams
    assert hist_rows(warehouse_url) == before
