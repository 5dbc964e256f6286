"""Rollups on plain PostgreSQL: tables maintained per partition window by the component."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.timescale.engines import RollupDefinitionChanged
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource
from data_platform_tests.lib.timescale.helpers import (
    WIDTHS,
    Row,
    assert_rollup_equals,
    assets_of,
    component,
    copy_rows,
    create_raw_table,
    expected_rollup,
    generate_rows,
    read_rollup,
    replace_window,
)

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(hours=30)
DAILY = {"start": "2024-01-01", "granularity": "daily"}
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-01-02",
}


def run(
    comp: TimescaleAggregateComponent,
    url: str,
    *,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets_of(comp),
        partition_key=partition_key,
        tags=tags,
        resources={"warehouse": WarehouseResource(url=url)},
        raise_on_error=raise_on_error,
    )


def metadata_by_rollup(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        out[materialization.asset_key.path[-1]] = {
            name: value.value for name, value in materialization.metadata.items()
        }
    return out


def checks_by_name(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def raw(pg_conn: psycopg.Connection) -> list[Row]:
    create_raw_table(pg_conn)
    rows = generate_rows(START, END)
    copy_rows(pg_conn, rows)
    return rows


def test_one_partition_refreshes_exactly_its_window(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    """Rows of hour 10 only, in every rollup: wider buckets hold what hour 10 contributes."""
    result = run(component(), warehouse_url, partition_key="2024-01-01-10:00")

    window = (START + timedelta(hours=10), START + timedelta(hours=11))
    for name, width in WIDTHS.items():
        assert_rollup_equals(
            read_rollup(pg_conn, "rollups", name), expected_rollup(raw, width, window)
        )
    meta = metadata_by_rollup(result)
    assert meta["power_1m"]["engine"] == "postgresql"
    assert meta["power_1m"]["window"] == "[2024-01-01T10:00:00+00:00, 2024-01-01T11:00:00+00:00)"
    assert meta["power_1m"]["dagster/row_count"] == meta["power_1m"]["rows_in_window"] == 3 * 60
    # 2024-01-01 00:00 UTC lies on a 7-hour boundary counted from 2000-01-03.
    assert meta["power_7h"]["window"] == "[2024-01-01T07:00:00+00:00, 2024-01-01T14:00:00+00:00)"
    checks = checks_by_name(result)
    assert checks[("power_1m", "matches_source")].passed
    assert checks[("power_1d", "matches_source")].passed
    assert all(checks[(name, "matches_yaml")].passed for name in WIDTHS)
    # Later hours are ingested but not rolled up yet.
    assert not checks[("power_1m", "freshness")].passed


def test_backfill_and_partition_replacement_match_python(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    """A two-day backfill in one run, then re-runs and a replaced source window (daily)."""
    comp = component(partitions=DAILY)
    result = run(comp, warehouse_url, tags=RANGE_TAGS)
    for name, width in WIDTHS.items():
        assert_rollup_equals(read_rollup(pg_conn, "rollups", name), expected_rollup(raw, width))
    checks = checks_by_name(result)
    assert all(c.passed for c in checks.values()), [
        (k, c.description) for k, c in checks.items() if not c.passed
    ]

    # Idempotent: the same partition twice leaves identical rows.
    before = {name: read_rollup(pg_conn, "rollups", name) for name in WIDTHS}
    run(comp, warehouse_url, partition_key="2024-01-01")
    run(comp, warehouse_url, partition_key="2024-01-01")
    assert {name: read_rollup(pg_conn, "rollups", name) for name in WIDTHS} == before

    # The source changes in hour 13 (values change, a signal disappears): one partition run
    # brings every width back in line.
    hour = (START + timedelta(hours=13), START + timedelta(hours=14))
    changed = [
        (ts, tag, None if value is None else value * 2 + 1, text)
        for ts, tag, value, text in raw
        if hour[0] <= ts < hour[1] and tag != 2
    ]
    replace_window(pg_conn, changed, *hour)
    now = [r for r in raw if not (hour[0] <= r[0] < hour[1])] + changed
    run(comp, warehouse_url, partition_key="2024-01-01")
    for name, width in WIDTHS.items():
        assert_rollup_equals(read_rollup(pg_conn, "rollups", name), expected_rollup(now, width))


def test_selected_aggregates_keep_count_and_sum(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    comp = component(aggregates=["avg", "last"], buckets=[{"width": "15m"}, {"width": "1h"}])
    run(comp, warehouse_url, partition_key="2024-01-01-04:00")
    window = (START + timedelta(hours=4), START + timedelta(hours=5))
    for name, width in (("power_15m", timedelta(minutes=15)), ("power_1h", timedelta(hours=1))):
        got = read_rollup(pg_conn, "rollups", name)
        assert set(next(iter(got.values()))) == {"bucket", "tag_id", "avg", "count", "sum", "last"}
        assert_rollup_equals(
            got, expected_rollup(raw, width, window), ("avg", "count", "sum", "last")
        )


def test_definition_change_fails_or_rebuilds_with_history(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    run(component(partitions=DAILY), warehouse_url, tags=RANGE_TAGS)

    changed = component(aggregates=["min", "max"], partitions=DAILY)
    result = run(changed, warehouse_url, partition_key="2024-01-02", raise_on_error=False)
    assert not result.success
    error = next(
        e.step_failure_data.error
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data
    )
    assert error is not None and error.cause is not None
    assert error.cause.cls_name == RollupDefinitionChanged.__name__
    assert "rollups.power_1m" in error.cause.message
    assert "on_definition_change: rebuild" in error.cause.message

    rebuilding = component(
        aggregates=["min", "max"], partitions=DAILY, on_definition_change="rebuild"
    )
    result = run(rebuilding, warehouse_url, partition_key="2024-01-02")
    meta = metadata_by_rollup(result)
    assert all(meta[name]["rebuilt"] for name in WIDTHS)
    # The whole history is back, not only 2024-01-02.
    for name, width in WIDTHS.items():
        got = read_rollup(pg_conn, "rollups", name)
        assert "avg" not in next(iter(got.values()))
        assert_rollup_equals(got, expected_rollup(raw, width), ("min", "max", "count"))
    assert all(c.passed for k, c in checks_by_name(result).items() if k[1] == "matches_yaml")


def test_retention_deletes_old_rows_and_skips_windows_past_it(
    pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    create_raw_table(pg_conn)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = generate_rows(today - timedelta(days=3), today, step=timedelta(minutes=5))
    copy_rows(pg_conn, rows)
    comp = component(
        partitions={
            "start": (today - timedelta(days=5)).date().isoformat(),
            "granularity": "daily",
        },
        buckets=[{"width": "1 hour"}, {"width": "1 day", "drop_after": "30 days"}],
        retention={"drop_after": "2 days", "raw_drop_after": "2 days"},
    )
    old_day = (today - timedelta(days=3)).strftime("%Y-%m-%d")
    result = run(comp, warehouse_url, partition_key=old_day)
    meta = metadata_by_rollup(result)
    assert "retention horizon" in meta["power_1h"]["skipped"]
    assert read_rollup(pg_conn, "rollups", "power_1h") == {}

    yesterday = (today - timedelta(days=1)).strftime("%Y-%m-%d")
    run(comp, warehouse_url, partition_key=yesterday)
    oldest = pg_conn.execute("SELECT min(ts) FROM raw.influx_hist").fetchone()
    assert oldest is not None and oldest[0] >= datetime.now(UTC) - timedelta(days=2, minutes=5)
    window = (today - timedelta(days=1), today)
    assert_rollup_equals(
        read_rollup(pg_conn, "rollups", "power_1h"),
        expected_rollup(rows, timedelta(hours=1), window),
    )


def test_concurrent_adjacent_partitions_on_a_fresh_database(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    """Three runs create the rollups at once: advisory locks make exactly one create each."""
    comp = component()
    warehouse = WarehouseResource(url=warehouse_url, max_connections=6)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def materialize(hour: int) -> None:
        try:
            engine = comp.open_engine(warehouse)
            barrier.wait()
            engine.prepare()
            window = Window(START + timedelta(hours=hour), START + timedelta(hours=hour + 1))
            for rollup in comp.rollup_plan().rollups:
                engine.refresh_window(rollup, window)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=materialize, args=(hour,)) for hour in (20, 21, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    window = (START + timedelta(hours=20), START + timedelta(hours=23))
    # Wider buckets (7 h, 1 d) span more hours, but only hours 20-22 are rolled up.
    for name, width in WIDTHS.items():
        assert_rollup_equals(
            read_rollup(pg_conn, "rollups", name), expected_rollup(raw, width, window)
        )


def test_checks_alone_do_not_refresh(
    raw: list[Row], pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    comp = component(buckets=[{"width": "1 minute"}])
    run(comp, warehouse_url, partition_key="2024-01-01-02:00")
    pg_conn.execute("DELETE FROM rollups.power_1m WHERE tag_id = 1")
    check = dg.AssetCheckKey(dg.AssetKey(["rollups", "power_1m"]), "matches_source")
    defs = dg.Definitions(
        assets=assets_of(comp),
        jobs=[dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(check))],
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
    )
    # Dagster runs checks without a partition: they look at the newest rolled-up partition.
    result = defs.resolve_job_def("check_only").execute_in_process()
    assert not result.get_asset_materialization_events()
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "count" in (evaluation.description or "")
    assert read_rollup(pg_conn, "rollups", "power_1m")  # nothing was re-materialized
