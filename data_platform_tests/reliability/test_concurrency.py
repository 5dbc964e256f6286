"""Concurrent runs of one table: the same window twice at once, and overlapping neighbours.

Each run is a real Dagster run in its own thread. A rendezvous makes the runs' window streams
meet: a run that reaches its first batch waits (a bounded time) for the other, so two writers
really are in the middle of the same window together unless the platform serialises them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.influx.reader.client import InfluxClient
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.helpers import check_results, load_yaml_component, run_assets
from data_platform_tests.lib.timescale.helpers import (
    WIDTHS,
    assert_rollup_equals,
    assets_of,
    component,
    copy_rows,
    create_raw_table,
    expected_rollup,
    generate_rows,
    read_rollup,
)
from data_platform_tests.reliability.support import (
    HOUR,
    PARTITION,
    T0,
    assert_window_is_the_source,
    device_lines,
    failure_text,
    source_attrs,
    write_lines,
)

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 120


class Rendezvous:
    """The first `parties - 1` callers wait (at most `timeout_s`) for the last one.

    `met` tells whether all of them were there at the same time. Once a wait has timed out,
    later callers pass without waiting.
    """

    def __init__(self, parties: int, timeout_s: float) -> None:
        self.parties = parties
        self.timeout_s = timeout_s
        self.waiting = 0
        self.met = False
        self.closed = False
        self._cond = threading.Condition()

    def arrive(self) -> None:
        with self._cond:
            if self.closed:
                return
            if self.waiting + 1 >= self.parties:
                self.met = True
                self._cond.notify_all()
                return
            self.waiting += 1
            if not self._cond.wait_for(lambda: self.met, self.timeout_s):
                self.closed = True
            self.waiting -= 1


def meet_in_streams(monkeypatch: pytest.MonkeyPatch, rendezvous: Rendezvous) -> None:
    """Each window stream (rows or columns) waits at `rendezvous` after its first batch."""
    for name in ("stream_window", "stream_window_columns"):
        original = getattr(InfluxClient, name)

        def stream_window(
            self: InfluxClient, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Iterator[SeriesBatch]:
            for index, batch in enumerate(_original(self, *args, **kwargs)):
                if index == 0:
                    rendezvous.arrive()
                yield batch

        monkeypatch.setattr(InfluxClient, name, stream_window)


def run_concurrently(jobs: list[Callable[[], dg.ExecuteInProcessResult]]) -> list[Any]:
    """Start every job in its own thread at once; their results (or exceptions) in order."""
    results: list[Any] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(index: int) -> None:
        start.wait(timeout=30)
        try:
            results[index] = jobs[index]()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RUN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a concurrent run did not finish"
    return results


def assert_all_succeeded(results: list[Any]) -> None:
    for result in results:
        assert not isinstance(result, Exception), repr(result)
        assert result.success, failure_text(result)


def duplicates(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) - count(DISTINCT (tag_id, ts)) FROM raw.influx_hist"
        ).fetchone()
    return int(row[0]) if row else -1


def test_same_partition_twice_at_once(
    influxd: LocalInfluxd,
    influx_db: str,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_lines(influxd, influx_db, device_lines(series=20, points=600))
    with load_yaml_component(source_attrs(influxd.url, influx_db)) as (_component, defs):

        def run() -> dg.ExecuteInProcessResult:
            return run_assets(defs, warehouse_url, partition_key=PARTITION, raise_on_error=False)

        # Into an empty warehouse (both runs create the tables), then over existing rows.
        for _round in range(2):
            rendezvous = Rendezvous(2, timeout_s=2.0)
            meet_in_streams(monkeypatch, rendezvous)
            results = run_concurrently([run, run])
            monkeypatch.undo()
            assert_all_succeeded(results)
            for result in results:
                assert check_results(result)[("plant/m", "reconciliation")].passed
            assert duplicates(warehouse_url) == 0
            assert_window_is_the_source(influxd, influx_db, warehouse_url)
            # The runs were never inside the window together: the second waited its turn.
            assert not rendezvous.met


def test_overlapping_adjacent_partitions_at_once(
    influxd: LocalInfluxd,
    influx_db: str,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `lateness`, a partition's window reaches into the one before it."""
    write_lines(influxd, influx_db, device_lines(series=20, points=1200, span=timedelta(hours=2)))
    rendezvous = Rendezvous(2, timeout_s=2.0)
    meet_in_streams(monkeypatch, rendezvous)
    attrs = source_attrs(influxd.url, influx_db, partitions={"lateness": "30m"})
    with load_yaml_component(attrs) as (_component, defs):

        def run(partition: str) -> Callable[[], dg.ExecuteInProcessResult]:
            return lambda: run_assets(
                defs, warehouse_url, partition_key=partition, raise_on_error=False
            )

        results = run_concurrently([run(PARTITION), run("2024-03-01-01:00")])
    assert_all_succeeded(results)
    assert duplicates(warehouse_url) == 0
    both = Window(T0, T0 + timedelta(hours=2))
    assert_window_is_the_source(influxd, influx_db, warehouse_url, both)
    assert_window_is_the_source(influxd, influx_db, warehouse_url, HOUR)


def test_adjacent_partitions_without_overlap_run_in_parallel(
    influxd: LocalInfluxd,
    influx_db: str,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows that do not overlap are not serialised: both streams are open together."""
    write_lines(influxd, influx_db, device_lines(series=20, points=1200, span=timedelta(hours=2)))
    rendezvous = Rendezvous(2, timeout_s=20.0)
    meet_in_streams(monkeypatch, rendezvous)
    with load_yaml_component(source_attrs(influxd.url, influx_db)) as (_component, defs):

        def run(partition: str) -> Callable[[], dg.ExecuteInProcessResult]:
            return lambda: run_assets(
                defs, warehouse_url, partition_key=partition, raise_on_error=False
            )

        results = run_concurrently([run(PARTITION), run("2024-03-01-01:00")])
    assert_all_succeeded(results)
    assert rendezvous.met
    assert duplicates(warehouse_url) == 0
    assert_window_is_the_source(
        influxd, influx_db, warehouse_url, Window(T0, T0 + timedelta(hours=2))
    )


def test_rollups_same_and_adjacent_partitions_at_once(
    pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    start = T0
    rows = generate_rows(start, start + timedelta(hours=3))
    create_raw_table(pg_conn)
    copy_rows(pg_conn, rows)
    assets = assets_of(component(partitions={"start": "2024-03-01", "granularity": "hourly"}))

    def run(partition: str) -> Callable[[], dg.ExecuteInProcessResult]:
        return lambda: dg.materialize(
            assets,
            partition_key=partition,
            resources={"warehouse": WarehouseResource(url=warehouse_url)},
            raise_on_error=False,
        )

    results = run_concurrently(
        [run(PARTITION), run(PARTITION), run("2024-03-01-01:00"), run("2024-03-01-02:00")]
    )
    assert_all_succeeded(results)
    covered = (start, start + timedelta(hours=3))
    for name, width in WIDTHS.items():
        got = read_rollup(pg_conn, "rollups", name)
        # Buckets wider than the three hours also hold what the hours contribute: compare the
        # buckets that lie inside the hours, and count rows of every bucket.
        inside = {k: v for k, v in got.items() if covered[0] <= k[0] and k[0] + width <= covered[1]}
        expected = {
            k: v
            for k, v in expected_rollup(rows, width, covered).items()
            if k[0] + width <= covered[1] and covered[0] <= k[0]
        }
        assert_rollup_equals(inside, expected)
        assert sum(r["count"] for r in got.values()) == sum(
            1
            for ts, _tag, value, _text in rows
            if value is not None and covered[0] <= ts < covered[1]
        ), name
