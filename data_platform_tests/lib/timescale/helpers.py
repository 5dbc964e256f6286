"""Raw historian data for rollup tests, and the rollups computed from it in plain Python."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.timescale import TimescaleAggregateComponent

ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
"""Written out here (not imported) so the tests check the component's bucket alignment."""

Row = tuple[datetime, int, float | None, str | None]


@dataclass(frozen=True)
class Expected:
    count: int
    sum: float
    min: float
    max: float
    first: float
    last: float

    @property
    def avg(self) -> float:
        return self.sum / self.count


def create_raw_table(
    conn: psycopg.Connection,
    schema: str = "raw",
    table: str = "influx_hist",
    *,
    hypertable: bool = False,
) -> None:
    """The historian's value table alone (no registry, no time index), in 1-day chunks."""
    tables = HistorianTables(schema, table, chunk_interval="1 day")
    ensure_tables(conn, tables, registry=False, hypertable=hypertable, brin_index=False)


def generate_rows(
    start: datetime, end: datetime, *, step: timedelta = timedelta(seconds=30), seed: int = 7
) -> list[Row]:
    """Four signals: a steady one, one with a gap, one with string rows mixed in, one string-only.

    Values are irregular floats (not sums of simple fractions) so that sums differ by rounding
    when added in a different order, as in production.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    t = start
    gap = (start + timedelta(hours=3, minutes=10), start + timedelta(hours=5, minutes=40))
    while t < end:
        rows.append((t, 1, round(rng.uniform(-50, 150), 6) + math.pi / 1000, None))
        if not (gap[0] <= t < gap[1]):
            rows.append((t + timedelta(seconds=7), 2, rng.gauss(230.0, 4.0), None))
        if rng.random() < 0.2:
            rows.append((t + timedelta(seconds=13), 3, None, rng.choice(["RUN", "STOP"])))
        else:
            rows.append((t + timedelta(seconds=13), 3, rng.uniform(0, 1) * 1e3, None))
        if rng.random() < 0.05:
            rows.append((t + timedelta(seconds=3), 4, None, "ALARM"))
        t += step
    return rows


def insert_rows(
    conn: psycopg.Connection, rows: Iterable[Row], schema: str = "raw", table: str = "influx_hist"
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (ts, tag_id, value, value_text) VALUES (%s, %s, %s, %s)"
            ).format(sql.Identifier(schema, table)),
            list(rows),
        )


def copy_rows(
    conn: psycopg.Connection, rows: Iterable[Row], schema: str = "raw", table: str = "influx_hist"
) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("COPY {} (ts, tag_id, value, value_text) FROM STDIN").format(
                sql.Identifier(schema, table)
            )
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def replace_window(
    conn: psycopg.Connection,
    rows: Sequence[Row],
    start: datetime,
    end: datetime,
    schema: str = "raw",
    table: str = "influx_hist",
) -> None:
    """What the ingest component does for a partition: delete the window, insert anew."""
    with conn.transaction():
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE ts >= %s AND ts < %s").format(
                sql.Identifier(schema, table)
            ),
            [start, end],
        )
        insert_rows(conn, [r for r in rows if start <= r[0] < end], schema, table)


def bucket_of(ts: datetime, width: timedelta) -> datetime:
    return ORIGIN + ((ts - ORIGIN) // width) * width


def expected_rollup(
    rows: Iterable[Row], width: timedelta, window: tuple[datetime, datetime] | None = None
) -> dict[tuple[datetime, int], Expected]:
    groups: dict[tuple[datetime, int], list[tuple[datetime, float]]] = defaultdict(list)
    for ts, tag_id, value, _text in rows:
        if value is None:
            continue
        if window is not None and not (window[0] <= ts < window[1]):
            continue
        groups[(bucket_of(ts, width), tag_id)].append((ts, value))
    out = {}
    for key, points in groups.items():
        points.sort()
        values = [v for _, v in points]
        out[key] = Expected(
            count=len(values),
            sum=math.fsum(values),
            min=min(values),
            max=max(values),
            first=values[0],
            last=values[-1],
        )
    return out


def read_rollup(
    conn: psycopg.Connection, schema: str, name: str
) -> dict[tuple[datetime, int], dict[str, Any]]:
    cur = conn.execute(
        sql.SQL("SELECT * FROM {} ORDER BY bucket, tag_id").format(sql.Identifier(schema, name))
    )
    columns = [d.name for d in cur.description or []]
    out = {}
    for row in cur.fetchall():
        record = dict(zip(columns, row, strict=True))
        out[(record["bucket"].astimezone(UTC), record["tag_id"])] = record
    return out


def assert_rollup_equals(
    got: dict[tuple[datetime, int], dict[str, Any]],
    expected: dict[tuple[datetime, int], Expected],
    columns: Sequence[str] = ("avg", "min", "max", "count", "sum", "first", "last"),
) -> None:
    assert sorted(got) == sorted(expected), _key_diff(got, expected)
    for key, want in expected.items():
        row = got[key]
        for column in columns:
            value = row[column]
            target = getattr(want, column)
            if column in ("sum", "avg"):
                assert math.isclose(value, target, rel_tol=1e-9, abs_tol=1e-9), (
                    key,
                    column,
                    value,
                    target,
                )
            else:
                assert value == target, (key, column, value, target)


def _key_diff(got: dict, expected: dict) -> str:  # type: ignore[type-arg]
    missing = sorted(set(expected) - set(got))[:5]
    extra = sorted(set(got) - set(expected))[:5]
    return f"missing {missing}, unexpected {extra}"


def component(**overrides: Any) -> TimescaleAggregateComponent:
    """A typical family: 1m, 5m, 1h, 7h (not aligned to the epoch) and 1d buckets."""
    attributes: dict[str, Any] = {
        "source": {"schema": "raw", "assets": ["plant_a/influx/power"]},
        "target": {"schema": "rollups", "name_prefix": "power"},
        "partitions": {"start": "2024-01-01", "granularity": "hourly"},
        "buckets": [
            {"width": "1 minute"},
            {"width": "5 minutes"},
            {"width": "1 hour"},
            {"width": "7 hours"},
            {"width": "1 day"},
        ],
    }
    attributes.update(overrides)
    return TimescaleAggregateComponent.resolve_from_dict(attributes)


def assets_of(comp: TimescaleAggregateComponent) -> list[dg.AssetsDefinition]:
    defs = comp.build_defs(dg.ComponentTree.for_test().load_context)
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]


WIDTHS = {
    "power_1m": timedelta(minutes=1),
    "power_5m": timedelta(minutes=5),
    "power_1h": timedelta(hours=1),
    "power_7h": timedelta(hours=7),
    "power_1d": timedelta(days=1),
}
