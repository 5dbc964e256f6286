"""Refreshing one hourly partition of rollups must not slow down as the raw table grows.

Starts a throwaway embedded PostgreSQL, fills two raw tables (1 day and 30 days of 50 signals at
10 s), and times the PostgreSQL engine of `TimescaleAggregateComponent` refreshing the newest
full hour (1 minute, 1 hour and 1 day rollups), median of several runs. Prints both times, their
ratio and how the planner reads the window from the raw table. Then what bit-stable sums cost:
the narrowest rollup's query over a whole day of raw rows with sums in time order (what the
engines run), with plain `sum`/`avg` (order left to the plan), and with exact `numeric` sums.

    .venv/bin/python scripts/bench_aggregates.py [--signals 50] [--step 10] [--runs 5] [--brin]

`--brin` adds the ingest component's BRIN index on the time column (plain PostgreSQL); without
it the only index is the table's UNIQUE (tag_id, ts).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.postgres import PostgresEngine
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.local_servers import start_postgres

FILL = """
INSERT INTO raw.influx_hist (ts, tag_id, value)
SELECT ts, tag_id, sin(extract(epoch FROM ts) / 600.0 + tag_id) * 100 + tag_id
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - %(step)s::interval,
                     %(step)s::interval) AS ts
CROSS JOIN generate_series(1, %(signals)s) AS tag_id
"""


def family() -> TimescaleAggregateComponent:
    return TimescaleAggregateComponent.resolve_from_dict(
        {
            "source": {"schema": "raw"},
            "target": {"schema": "rollups", "name_prefix": "bench"},
            "partitions": {"start": "2000-01-03", "granularity": "hourly"},
            "buckets": [{"width": "1 minute"}, {"width": "1 hour"}, {"width": "1 day"}],
        }
    )


def fill(url: str, days: int, end: datetime, args: argparse.Namespace) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_tables(conn, HistorianTables("raw"), registry=False, brin_index=args.brin)
        conn.execute(
            FILL,
            {
                "start": end - timedelta(days=days),
                "end": end,
                "step": timedelta(seconds=args.step),
                "signals": args.signals,
            },
        )
        conn.execute("VACUUM ANALYZE raw.influx_hist")
        row = conn.execute("SELECT count(*) FROM raw.influx_hist").fetchone()
    return int(row[0]) if row else 0


def source_scan(url: str, component: TimescaleAggregateComponent, window: Window) -> str:
    """The plan nodes that read the raw table for the narrowest rollup's window."""
    plan = component.rollup_plan()
    select = q.rollup_select("postgresql", plan, plan.rollups[0], windowed=True)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("EXPLAIN (COSTS OFF) {}").format(select),
            {"start": window.start, "end": window.end},
        ).fetchall()
    lines = [r[0].strip() for r in rows]
    return " | ".join(line for line in lines if "influx_hist" in line or "Cond" in line)


def time_refresh(url: str, window: Window, runs: int) -> float:
    component = family()
    warehouse = WarehouseResource(url=url)
    engine = PostgresEngine(component.rollup_plan(), warehouse)
    engine.prepare()
    timings = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        for rollup in component.rollup_plan().rollups:
            engine.refresh_window(rollup, window)
        timings.append(time.perf_counter() - started)
    # The first run warms the cache and creates nothing new: leave it out.
    return statistics.median(timings[1:])


SUM_VARIANTS = {
    "ordered (ORDER BY ts)": ('sum("value" ORDER BY "ts")', 'avg("value" ORDER BY "ts")'),
    "plain (plan order)": ('sum("value")', 'avg("value")'),
    "numeric (exact)": (
        'sum("value"::numeric)::double precision',
        '(sum("value"::numeric) / count("value"))::double precision',
    ),
}


def time_sum_variants(url: str, window: Window, runs: int) -> dict[str, float]:
    """Median seconds of the narrowest rollup's aggregate query per way of summing."""
    plan = family().rollup_plan()
    shipped = q.rollup_select("postgresql", plan, plan.rollups[0], windowed=True).as_string(None)
    ordered_sum, ordered_avg = SUM_VARIANTS["ordered (ORDER BY ts)"]
    assert ordered_sum in shipped and ordered_avg in shipped, shipped
    statements = {
        name: sql.SQL(shipped.replace(ordered_sum, s).replace(ordered_avg, a))  # type: ignore[arg-type]
        for name, (s, a) in SUM_VARIANTS.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in statements}
    with psycopg.connect(url) as conn:
        # Rounds interleave the variants, so a busy moment of the machine hits all of them.
        for _ in range(runs + 1):
            for name, statement in statements.items():
                started = time.perf_counter()
                conn.execute(statement, {"start": window.start, "end": window.end}).fetchall()
                timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(t[1:]) for name, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--signals", type=int, default=50)
    parser.add_argument("--step", type=int, default=10, help="seconds between points")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--brin", action="store_true", help="add a BRIN index on ts")
    args = parser.parse_args()

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = Window(end - timedelta(hours=1), end)
    root = Path(tempfile.mkdtemp(prefix="bench-aggregates-"))
    server = start_postgres(root / "data", cleanup_mode="delete")
    try:
        results: dict[int, float] = {}
        url_1d = ""
        for days in (1, 30):
            url = server.create_database(f"bench_{days}d")
            if days == 1:
                url_1d = url
            started = time.perf_counter()
            rows = fill(url, days, end, args)
            print(
                f"{days:>2} days: {rows:,} raw rows loaded in {time.perf_counter() - started:.1f} s"
            )
            print(f"         window scan: {source_scan(url, family(), window)}")
            results[days] = time_refresh(url, window, args.runs)
            print(
                f"         refresh of one hourly partition (1m, 1h, 1d): "
                f"{results[days] * 1000:.1f} ms (median of {args.runs})"
            )
        print(f"ratio 30 days / 1 day: {results[30] / results[1]:.2f}")
        day = Window(end - timedelta(days=1), end)
        variants = time_sum_variants(url_1d, day, args.runs)
        plain = variants["plain (plan order)"]
        print("1-minute rollup of one day of raw rows, by way of summing (median):")
        for name, seconds in variants.items():
            print(f"    {name:<24} {seconds * 1000:8.1f} ms  ({seconds / plain:.2f}x plain)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
