"""Rollups on TimescaleDB (the PGlite test engine), and their equivalence with plain PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.timescale.engines import RollupDefinitionChanged
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

pytestmark = pytest.mark.timescale

START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(hours=30)
DAILY = {"start": "2024-01-01", "granularity": "daily"}
# Loading rows into the WASM engine is slow: a point a minute per signal is enough here.
STEP = timedelta(minutes=1)


@pytest.fixture
def ts_conn(timescale_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None) as conn:
        yield conn


def family(schema: str, **overrides: Any) -> TimescaleAggregateComponent:
    return component(
        source={"schema": f"{schema}_raw", "assets": ["plant_a/influx/power"]},
        target={"schema": schema, "name_prefix": "power"},
        partitions=DAILY,
        **overrides,
    )


def run(
    comp: TimescaleAggregateComponent,
    warehouse: WarehouseResource,
    partition_key: str,
    *,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets_of(comp),
        partition_key=partition_key,
        resources={"warehouse": warehouse},
        raise_on_error=raise_on_error,
    )


def timescale(url: str) -> WarehouseResource:
    return WarehouseResource(url=url, prepared_statements=False)


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()} {e.check_name}: {e.description}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]


def metadata_by_rollup(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        out[materialization.asset_key.path[-1]] = {
            name: value.value for name, value in materialization.metadata.items()
        }
    return out


def load_raw(conn: psycopg.Connection, schema: str, rows: list[Row], *, hypertable: bool) -> None:
    create_raw_table(conn, schema, hypertable=hypertable)
    copy_rows(conn, rows, schema)


def test_same_rollups_as_postgresql(
    timescale_url: str, ts_conn: psycopg.Connection, warehouse_url: str, pg_conn: psycopg.Connection
) -> None:
    """Partitions out of order, then a replaced source window: both engines, identical rows."""
    rows = generate_rows(START, END, step=STEP)
    hour = (START + timedelta(hours=13), START + timedelta(hours=14))
    changed = [
        (ts, tag, None if value is None else value * 3 - 7, text)
        for ts, tag, value, text in rows
        if hour[0] <= ts < hour[1] and tag != 1
    ]
    final = [r for r in rows if not (hour[0] <= r[0] < hour[1])] + changed
    engines: dict[str, tuple[psycopg.Connection, WarehouseResource, bool]] = {
        "timescaledb": (ts_conn, timescale(timescale_url), True),
        "postgresql": (pg_conn, WarehouseResource(url=warehouse_url), False),
    }
    results: dict[str, dict[str, dict]] = {}
    for engine, (conn, warehouse, hypertable) in engines.items():
        comp = family("eq", materialized_only=True)
        load_raw(conn, "eq_raw", rows, hypertable=hypertable)
        # The 7 h bucket 21:00-04:00 spans both days: the second run must fold day 1 in.
        first = run(comp, warehouse, "2024-01-02")
        assert metadata_by_rollup(first)["power_1m"]["engine"].startswith(engine)
        run(comp, warehouse, "2024-01-01")
        replace_window(conn, changed, *hour, schema="eq_raw")
        last = run(comp, warehouse, "2024-01-01")
        assert not failed_checks(last), failed_checks(last)
        results[engine] = {name: read_rollup(conn, "eq", name) for name in WIDTHS}

    for name, width in WIDTHS.items():
        timescale_rows, postgres_rows = results["timescaledb"][name], results["postgresql"][name]
        assert_rollup_equals(timescale_rows, expected_rollup(final, width))
        assert sorted(timescale_rows) == sorted(postgres_rows)
        for key, ts_row in timescale_rows.items():
            pg_row = postgres_rows[key]
            assert set(ts_row) == set(pg_row)
            for column in ("bucket", "tag_id", "count", "min", "max", "first", "last"):
                assert ts_row[column] == pg_row[column], (name, key, column)
            for column in ("sum", "avg"):
                assert math.isclose(ts_row[column], pg_row[column], rel_tol=1e-9), (name, key)


def jobs(conn: psycopg.Connection, schema: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = conn.execute(
        "SELECT hypertable_name, proc_name, job_id, schedule_interval, config "
        "FROM timescaledb_information.jobs WHERE hypertable_schema = %s",
        [schema],
    ).fetchall()
    return {
        (table, proc): {"job_id": job_id, "schedule": schedule, **config}
        for table, proc, job_id, schedule, config in rows
    }


POLICIES: dict[str, Any] = {
    "buckets": [
        {"width": "1 minute"},
        {"width": "1 hour"},
        {
            "width": "1 day",
            "refresh": {
                "start_offset": "3 days",
                "end_offset": "1 day",
                "schedule_interval": "1 day",
            },
        },
    ],
    "refresh": {
        "start_offset": "3 hours",
        "end_offset": "1 minute",
        "schedule_interval": "5 minutes",
    },
    "columnstore": {"after": "30 days"},
    "retention": {"drop_after": "4000 days", "raw_drop_after": "400 days"},
}


def test_policies_follow_yaml_and_run(timescale_url: str, ts_conn: psycopg.Connection) -> None:
    rows = generate_rows(START, END, step=STEP)
    load_raw(ts_conn, "pol_raw", rows, hypertable=True)
    warehouse = timescale(timescale_url)
    result = run(family("pol", **POLICIES), warehouse, "2024-01-01")
    assert not failed_checks(result), failed_checks(result)
    found = jobs(ts_conn, "pol")
    assert found[("power_1m", "policy_refresh_continuous_aggregate")]["start_offset"] == "03:00:00"
    assert found[("power_1d", "policy_refresh_continuous_aggregate")]["start_offset"] == "3 days"
    assert found[("power_1h", "policy_compression")]["compress_after"] == "30 days"
    assert found[("power_1d", "policy_retention")]["drop_after"] == "4000 days"
    assert jobs(ts_conn, "pol_raw")[("influx_hist", "policy_retention")]["drop_after"] == "400 days"
    segmentby = ts_conn.execute(
        "SELECT s.segmentby, s.orderby FROM timescaledb_information.continuous_aggregates c "
        "JOIN timescaledb_information.hypertable_compression_settings s ON s.hypertable = "
        "format('%I.%I', c.materialization_hypertable_schema, "
        "c.materialization_hypertable_name)::regclass WHERE c.view_schema = 'pol'"
    ).fetchall()
    assert set(segmentby) == {("tag_id", "bucket DESC")}

    # Settings change in place: no rebuild, jobs replaced, materialized_only altered.
    changed = {
        **POLICIES,
        "refresh": {
            "start_offset": "6 hours",
            "end_offset": "0",
            "schedule_interval": "10 minutes",
        },
        "retention": {"raw_drop_after": "400 days"},
        "materialized_only": False,
    }
    result = run(family("pol", **changed), warehouse, "2024-01-02")
    assert not failed_checks(result), failed_checks(result)
    assert not any(m["rebuilt"] for m in metadata_by_rollup(result).values())
    found = jobs(ts_conn, "pol")
    refresh_1m = found[("power_1m", "policy_refresh_continuous_aggregate")]
    assert (refresh_1m["start_offset"], refresh_1m["end_offset"]) == ("06:00:00", "00:00:00")
    assert refresh_1m["schedule"] == timedelta(minutes=10)
    assert ("power_1m", "policy_retention") not in found
    realtime = ts_conn.execute(
        "SELECT bool_and(NOT materialized_only) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = 'pol'"
    ).fetchone()
    assert realtime == (True,)

    # Background jobs never start on their own here: run each one.
    for job in [*jobs(ts_conn, "pol").values(), *jobs(ts_conn, "pol_raw").values()]:
        ts_conn.execute("CALL run_job(%s)", [job["job_id"]])
    raw_left = ts_conn.execute("SELECT count(*) FROM pol_raw.influx_hist").fetchone()
    assert raw_left == (0,)  # 2024 is more than 400 days ago: the raw chunks are dropped
    compressed = ts_conn.execute(
        "SELECT count(*) FILTER (WHERE ch.is_compressed), count(*) "
        "FROM timescaledb_information.chunks ch JOIN timescaledb_information.continuous_aggregates c "
        "ON ch.hypertable_schema = c.materialization_hypertable_schema "
        "AND ch.hypertable_name = c.materialization_hypertable_name WHERE c.view_schema = 'pol'"
    ).fetchone()
    assert compressed is not None and compressed[0] == compressed[1] > 0
    # The rollups outlive the raw data they were computed from.
    for name, width in (("power_1m", timedelta(minutes=1)), ("power_1d", timedelta(days=1))):
        assert_rollup_equals(read_rollup(ts_conn, "pol", name), expected_rollup(rows, width))


def test_definition_change_fails_or_rebuilds(
    timescale_url: str, ts_conn: psycopg.Connection
) -> None:
    rows = generate_rows(START, END, step=STEP)
    load_raw(ts_conn, "chg_raw", rows, hypertable=True)
    warehouse = timescale(timescale_url)
    run(family("chg"), warehouse, "2024-01-01")

    result = run(family("chg", aggregates=["max"]), warehouse, "2024-01-02", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error if failure.step_failure_data else None
    assert error is not None and error.cause is not None
    assert error.cause.cls_name == RollupDefinitionChanged.__name__
    assert "chg.power_1m" in error.cause.message
    assert "on_definition_change: rebuild" in error.cause.message

    rebuilding = family("chg", aggregates=["max"], on_definition_change="rebuild")
    result = run(rebuilding, warehouse, "2024-01-02")
    assert all(m["rebuilt"] for m in metadata_by_rollup(result).values())
    assert not failed_checks(result), failed_checks(result)
    # Day 1 was only ever refreshed before the rebuild: the history refresh brought it back.
    for name, width in WIDTHS.items():
        got = read_rollup(ts_conn, "chg", name)
        assert set(next(iter(got.values()))) == {"bucket", "tag_id", "max", "count"}
        assert_rollup_equals(got, expected_rollup(rows, width), ("max", "count"))
