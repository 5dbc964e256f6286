"""Benchmark of the signal registry's per-run cost as a fleet's known signals grow.

One InfluxDB source, measurement `fleet`, sites as tags: each hourly window holds the fleet's
active sites (100 sites x 10 fields at 1-minute resolution = 1,000 signals, 60,000 values) and
one new site (10 new signals to register). Before the runs, the source's registry is filled
through `SignalRegistry.ensure` with 1 k, 10 k and 50 k known signals (the active ones and
silent sites). Then each level runs real Dagster materializations of hourly windows
(`dg.materialize` of the component's ingest asset, one partition per run) and times every
registry call made during the run (`SignalRegistry.load`, `lookup`, `ensure` with the lookups
it makes, `holding` for each window's deletion set, `update_types`, `mark_removed`, wrapped
with perf_counter here), printed as ms per run next to the checks' time (of which
`warehouse_stats`, the reconciliation's join of the window's rows to the registry) and the
run's wall.

Usage: `just bench-fleet` (`--quick` for 2 runs a level and 1 k / 10 k known signals only,
`--levels 1000,10000,50000`, `--runs N`, `--profile` for a cProfile of one 50 k run's registry).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = datetime(2024, 6, 1, tzinfo=UTC)
NS = 1_000_000_000
FIELDS = [f"f{i}" for i in range(10)]
ACTIVE_SITES = 100
REGISTRY_CALLS = ("load", "lookup", "ensure", "holding", "update_types", "mark_removed")


def log(text: str) -> None:
    print(text, flush=True)


def fleet_lines(hours: int) -> Iterator[str]:
    """Per hour, the active sites and one new site `new<hour>`, one point a minute each."""
    t0 = int(START.timestamp()) * NS
    for hour in range(hours):
        sites = [f"s{s:05d}" for s in range(ACTIVE_SITES)] + [f"new{hour:03d}"]
        for minute in range(60):
            t = t0 + (hour * 60 + minute) * 60 * NS
            for s, site in enumerate(sites):
                values = ",".join(
                    f"{f}={(minute * 7 + s + i) % 1000 * 0.25}" for i, f in enumerate(FIELDS)
                )
                yield f"fleet,site={site} {values} {t}"


def load_influx(influx: Any, db: str, hours: int) -> None:
    influx.create_database(db)
    batch: list[str] = []
    for line in fleet_lines(hours):
        batch.append(line)
        if len(batch) == 20_000:
            influx.write_lines(db, "\n".join(batch))
            batch.clear()
    if batch:
        influx.write_lines(db, "\n".join(batch))


def component_for(influx_url: str, db: str, name: str):
    from data_platform.lib.influx.component import InfluxIngestComponent

    return InfluxIngestComponent.model_validate(
        {
            "name": name,
            "influx": {"url": influx_url, "database": db, "chunk_size": 10_000},
            "measurements": [{"name": "fleet"}],
            "target": {"schema": "fleet", "table": f"hist_{name}", "registry_table": f"tag_{name}"},
            "partitions": {"start": START.strftime("%Y-%m-%d"), "granularity": "hourly"},
        }
    )


def prefill(component: Any, pg_url: str, known: int) -> float:
    """Register `known` signals of the source: the active sites' first, then silent sites."""
    import psycopg

    from data_platform.lib.historian.signals import Signal
    from data_platform.lib.historian.tables import ensure_tables
    from data_platform.lib.influx.run import new_registry

    plan = component.ingest_plan()
    registry = new_registry(plan)
    sites = [f"s{s:05d}" for s in range(-(-known // len(FIELDS)))]
    signals = [Signal(plan.source, "fleet", (("site", site),), f) for site in sites for f in FIELDS]
    started = time.perf_counter()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ensure_tables(conn, plan.tables)
        for i in range(0, known, 10_000):
            registry.ensure(conn, signals[i : min(i + 10_000, known)])
    return time.perf_counter() - started


@contextmanager
def timed_registry() -> Iterator[dict[str, list[float]]]:
    """Wrap the registry's public methods; yield the seconds of each call by method.

    A call made inside another (`ensure` looking up) counts in the outer one only."""
    from data_platform.lib.historian.registry import SignalRegistry

    spent: dict[str, list[float]] = defaultdict(list)
    originals = {name: getattr(SignalRegistry, name) for name in REGISTRY_CALLS}
    depth = [0]

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            depth[0] += 1
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[name].append(time.perf_counter() - started)

        return timed

    from data_platform.lib.influx import checks

    stats = checks.warehouse_stats
    for name, method in originals.items():
        setattr(SignalRegistry, name, wrap(name, method))
    checks.warehouse_stats = wrap("warehouse_stats", stats)
    try:
        yield spent
    finally:
        for name, method in originals.items():
            setattr(SignalRegistry, name, method)
        checks.warehouse_stats = stats


def one_run(component: Any, pg_url: str, hour: int, profile: cProfile.Profile | None) -> dict:
    """Materialize one hourly window of the ingest; the registry's seconds by method and wall."""
    import dagster as dg
    from dagster.components.testing.utils import component_defs

    from data_platform.lib.warehouse import WarehouseResource

    defs = component_defs(component=component)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    ingest = [a for a in assets if a.partitions_def is not None]
    partition = (START + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")
    with timed_registry() as spent:
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        result = dg.materialize(
            ingest,
            partition_key=partition,
            resources={"warehouse": WarehouseResource(url=pg_url)},
            raise_on_error=True,
        )
        if profile is not None:
            profile.disable()
        wall = time.perf_counter() - started
    rows = 0
    checks = 0.0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        value = metadata.get("rows_written")
        rows += int(value.value) if value is not None else 0  # type: ignore[arg-type]
        steps = metadata.get("seconds")
        checks += float(steps.value["checks"]) if steps is not None else 0.0  # type: ignore[index]
    figures = {name: sum(spent.get(name, [])) for name in (*REGISTRY_CALLS, "warehouse_stats")}
    figures.update(wall=wall, rows=rows, checks=checks, calls=sum(len(v) for v in spent.values()))
    return figures


def registered_count(pg_url: str, component: Any) -> int:
    import psycopg
    from psycopg import sql

    plan = component.ingest_plan()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(plan.tables.tags)).fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 runs a level, 1 k and 10 k only")
    parser.add_argument("--levels", default=None, help="known signals, e.g. 1000,10000,50000")
    parser.add_argument("--runs", type=int, default=None, help="hourly runs a level (default 5)")
    parser.add_argument(
        "--profile", action="store_true", help="profile the largest level's last run"
    )
    args = parser.parse_args()
    levels = [
        int(x)
        for x in (args.levels or ("1000,10000" if args.quick else "1000,10000,50000")).split(",")
    ]
    runs = args.runs or (2 if args.quick else 5)

    from data_platform.utils.local_servers import start_influxd, start_postgres

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(work / "xdg"))
    os.environ["DAGSTER_HOME"] = ""
    influx = start_influxd(work / "influxd")
    pg = start_postgres(work / "pg", cleanup_mode="delete")
    try:
        pg_url = pg.create_database("fleet")
        # One warm-up run (first imports, first table creation) is not counted.
        hours = runs + 1
        load_influx(influx, "fleet", hours)
        per_window = (ACTIVE_SITES + 1) * len(FIELDS)
        log(
            f"fleet: {ACTIVE_SITES} active sites + 1 new site a window x {len(FIELDS)} fields, "
            f"1-minute points: {per_window:,} signals and {per_window * 60:,} values an hourly "
            f"window, {len(FIELDS)} of them new; {runs} runs a level (after one warm-up)"
        )
        log("")
        log(
            "| known signals | registry ms/run (median) | load | ensure | holding | update_types "
            "| checks ms | of which warehouse_stats | run wall s | rows/run |"
        )
        log("|---|---|---|---|---|---|---|---|---|---|")
        table: list[tuple[int, float]] = []
        for known in levels:
            component = component_for(influx.url, "fleet", f"k{known}")
            prefill(component, pg_url, known)
            one_run(component, pg_url, 0, None)
            results = []
            for hour in range(1, hours):
                profile = (
                    cProfile.Profile()
                    if args.profile and known == levels[-1] and hour == hours - 1
                    else None
                )
                results.append(one_run(component, pg_url, hour, profile))
                if profile is not None:
                    log("")
                    pstats.Stats(profile).sort_stats("cumulative").print_stats(
                        "registry|psycopg", 25
                    )
            total = [sum(r[name] for name in REGISTRY_CALLS) * 1000 for r in results]
            median = statistics.median(total)
            table.append((known, median))

            def med(name: str, results: list[dict] = results) -> float:
                return statistics.median(r[name] for r in results) * 1000

            log(
                f"| {registered_count(pg_url, component):,} at the end ({known:,} before) | "
                f"{median:.1f} | {med('load'):.1f} | {med('ensure'):.1f} | {med('holding'):.1f} | "
                f"{med('update_types'):.1f} | {med('checks'):.1f} | {med('warehouse_stats'):.1f} | "
                f"{statistics.median(r['wall'] for r in results):.2f} | {results[-1]['rows']:,} |"
            )
        base = table[0][1]
        log("")
        for known, ms in table[1:]:
            log(
                f"registry ms/run at {known:,} / at {table[0][0]:,} known signals: {ms / base:.2f}x"
            )
    finally:
        influx.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
