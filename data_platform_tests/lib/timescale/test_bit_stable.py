"""Rollup sums and averages are bit-stable: re-runs, late data and the other engine give the same bits."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.warehouse import WarehouseResource
from data_platform_tests.lib.timescale.helpers import (
    Row,
    assets_of,
    bucket_of,
    component,
    copy_rows,
    create_raw_table,
    insert_rows,
    read_rollup,
)

pytestmark = [pytest.mark.integration, pytest.mark.timescale]

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 2
WIDTHS = {
    "bits_15m": timedelta(minutes=15),
    "bits_1h": timedelta(hours=1),
    "bits_7h": timedelta(hours=7),
    "bits_1d": timedelta(days=1),
}
LATE = (START + timedelta(days=1, hours=10, seconds=31), 2, -0.000123456789012345, None)
"""A late point: it moves its own buckets (one per width) and nothing else."""

RollupRows = dict[str, dict[tuple[datetime, int], dict[str, Any]]]


def many_decimal_rows(seed: int = 12) -> list[Row]:
    """Three signals of values with 15-17 significant digits, both signs, magnitudes 1e-6..1e6."""
    rng = random.Random(seed)
    rows: list[Row] = []
    t = START
    while t < START + timedelta(days=DAYS):
        for tag_id in (1, 2, 3):
            value = rng.uniform(-1, 1) * 10 ** rng.randint(-6, 6)
            rows.append((t + timedelta(seconds=tag_id), tag_id, value, None))
        t += timedelta(seconds=40)
    return rows


def family(schema: str) -> Any:
    return component(
        source={"schema": f"{schema}_raw", "assets": ["plant_a/influx/power"]},
        target={"schema": schema, "name_prefix": "bits"},
        partitions={"start": "2024-01-01", "granularity": "daily"},
        buckets=[{"width": w} for w in ("15 minutes", "1 hour", "7 hours", "1 day")],
        materialized_only=True,
    )


def materialize(comp: Any, warehouse: WarehouseResource, day: str) -> None:
    dg.materialize(assets_of(comp), partition_key=day, resources={"warehouse": warehouse})


def snapshot(conn: psycopg.Connection, schema: str) -> RollupRows:
    return {name: read_rollup(conn, schema, name) for name in WIDTHS}


def bits(rows: RollupRows) -> dict[tuple[str, datetime, int], tuple[Any, ...]]:
    """Every stored value, floats as their exact hex form (so -0.0 != 0.0 and 1 ulp counts)."""
    return {
        (name, *key): tuple(
            (column, value.hex() if isinstance(value, float) else value)
            for column, value in sorted(row.items())
        )
        for name, by_key in rows.items()
        for key, row in by_key.items()
    }


def in_order_sum(values: list[tuple[datetime, float]]) -> float:
    total = 0.0
    for _, value in sorted(values):
        total += value
    return total


@pytest.fixture(params=["postgresql", "timescaledb"])
def engine(request: pytest.FixtureRequest) -> tuple[str, psycopg.Connection, WarehouseResource]:
    if request.param == "timescaledb":
        url = request.getfixturevalue("timescale_url")
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        warehouse = WarehouseResource(url=url, prepared_statements=False)
    else:
        url = request.getfixturevalue("warehouse_url")
        conn = psycopg.connect(url, autocommit=True)
        warehouse = WarehouseResource(url=url)
    request.addfinalizer(conn.close)
    return request.param, conn, warehouse


def run_scenario(
    engine: tuple[str, psycopg.Connection, WarehouseResource], schema: str
) -> tuple[RollupRows, RollupRows, RollupRows]:
    """(after the first runs, after re-runs, after a late point and its partition's re-run)."""
    kind, conn, warehouse = engine
    rows = many_decimal_rows()
    create_raw_table(conn, f"{schema}_raw", hypertable=kind == "timescaledb")
    # Shuffled on disk: an engine that adds in storage or plan order gets other bits.
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    copy_rows(conn, shuffled, f"{schema}_raw")
    comp = family(schema)
    materialize(comp, warehouse, "2024-01-02")
    materialize(comp, warehouse, "2024-01-01")
    first = snapshot(conn, schema)
    materialize(comp, warehouse, "2024-01-01")
    materialize(comp, warehouse, "2024-01-02")
    again = snapshot(conn, schema)
    insert_rows(conn, [LATE], f"{schema}_raw")
    materialize(comp, warehouse, "2024-01-02")
    return first, again, snapshot(conn, schema)


def test_reruns_and_late_data_leave_untouched_rows_bit_identical(engine) -> None:
    kind = engine[0]
    first, again, late = run_scenario(engine, f"bits_{kind[:2]}")
    assert bits(again) == bits(first)

    moved = {(name, bucket_of(LATE[0], width), LATE[1]) for name, width in WIDTHS.items()}
    before, after = bits(first), bits(late)
    assert set(after) == set(before)
    assert {key for key in after if after[key] != before[key]} == moved

    # The narrowest sums are the values added one by one in time order, bit for bit.
    rows = [*many_decimal_rows(), LATE]
    by_bucket: dict[tuple[datetime, int], list[tuple[datetime, float]]] = {}
    for ts, tag_id, value, _ in rows:
        assert value is not None
        by_bucket.setdefault((bucket_of(ts, WIDTHS["bits_15m"]), tag_id), []).append((ts, value))
    for key, values in by_bucket.items():
        stored = late["bits_15m"][key]
        assert stored["sum"].hex() == in_order_sum(values).hex(), key
        assert stored["avg"].hex() == (in_order_sum(values) / len(values)).hex(), key


def test_both_engines_give_bit_identical_rows(
    timescale_url: str, warehouse_url: str, pg_conn: psycopg.Connection
) -> None:
    ts_conn = psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None)
    with ts_conn:
        ts_engine = (
            "timescaledb",
            ts_conn,
            WarehouseResource(url=timescale_url, prepared_statements=False),
        )
        pg_engine = ("postgresql", pg_conn, WarehouseResource(url=warehouse_url))
        timescale_rows = run_scenario(ts_engine, "bits_same")
    postgres_rows = run_scenario(pg_engine, "bits_same")
    for ts_stage, pg_stage in zip(timescale_rows, postgres_rows, strict=True):
        assert bits(ts_stage) == bits(pg_stage)
