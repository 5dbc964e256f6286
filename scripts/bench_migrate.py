"""Benchmark of a migration: a year of a synthetic plant backfilled with its rollups.

A synthetic plant (20 series x 2 fields at 1-minute resolution; a year is about 21 M values) in
a throwaway influxd, one dropped `defs.yaml` in a temp copy of the project writing the sample
raw table (the sample rollups pick it up through `all_writers`), backfilled as a user would:
ONE `dg launch --assets "key:migrated/plant or key:rollups/*" --partition-range A...B`.

Prints runs launched (counted in the copy's DAGSTER_HOME instance), wall time, values/s, peak
RSS of the `dg launch` process tree (resource.getrusage(RUSAGE_CHILDREN)), and the per-partition
way: a few single-partition `dg launch` runs, their mean extrapolated to every partition. The
target: runs <= 2 and wall <= 1.5 x (values / in-run ingest throughput + rollup refresh time),
with the in-run throughput from the ingest materialization's `values_per_second` metadata and the
refresh time as the rollup steps' durations in the same run (the instance's step stats).

Usage: `just bench-migrate` (`--quick` for 2 weeks, `--days N`, `--single-runs N`).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = datetime(2025, 1, 1, tzinfo=UTC)
SERIES = 20
FIELDS = 2
ASSETS = "key:migrated/plant or key:rollups/*"

PLANT_YAML = """\
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers
attributes:
  name: migrated
  influx:
    url: "{{ env.INFLUX_URL }}"
    database: migrated
    chunk_size: 10000
  measurements:
    - name: plant
  target:
    schema: "{{ schema_for('raw') }}"
  partitions:
    start: "2025-01-01"
    granularity: hourly
"""


def log(text: str) -> None:
    print(text, flush=True)


def load_influx(influx: Any, days: int) -> float:
    influx.create_database("migrated")
    t0 = int(START.timestamp())
    started = time.perf_counter()
    batch: list[str] = []
    for minute in range(days * 1440):
        t = t0 + minute * 60
        for s in range(SERIES):
            batch.append(
                f"plant,series=s{s:02d} p={((minute * 7 + s) % 1000) * 0.125 - 40},"
                f"q={((minute + 3 * s) % 977) * 0.01} {t}"
            )
        if len(batch) >= 20_000:
            influx.write_lines("migrated", "\n".join(batch), precision="s")
            batch.clear()
    if batch:
        influx.write_lines("migrated", "\n".join(batch), precision="s")
    return time.perf_counter() - started


def partition(hour: int) -> str:
    return (START + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def launch(project: Path, env: dict[str, str], *args: str) -> float:
    from data_platform_tests.project_copy import dg

    started = time.perf_counter()
    result = dg(project, "launch", "--assets", ASSETS, *args, env=env, timeout=6 * 3600)
    if result.returncode != 0:
        raise SystemExit(f"dg launch failed:\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def run_figures(home: Path) -> dict[str, Any]:
    """Runs in the instance; of the first: ingest values/s and the rollup steps' seconds."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        first = runs[-1]
        stats = instance.get_run_step_stats(first.run_id)
        rollup_s = sum(
            (s.end_time or 0) - (s.start_time or 0) for s in stats if "rollup" in s.step_key
        )
        steps = {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in stats}
        records = instance.fetch_materializations(dg.AssetKey(["migrated", "plant"]), limit=1)
        materialization = records.records[0].asset_materialization if records.records else None
        meta = materialization.metadata if materialization is not None else {}
        return {
            "runs": len(runs),
            "statuses": sorted({str(r.status.value) for r in runs}),
            "values_per_second": float(meta["values_per_second"].value) if meta else 0.0,  # type: ignore[arg-type]
            "rows": int(meta["rows_written"].value) if meta else 0,  # type: ignore[arg-type]
            "rollup_s": rollup_s,
            "steps": steps,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 weeks instead of a year")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--single-runs", type=int, default=3)
    args = parser.parse_args()
    days = args.days or (14 if args.quick else 365)
    hours = days * 24

    from data_platform.utils.local_servers import start_influxd, start_postgres
    from data_platform_tests.project_copy import copy_project

    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(work / "xdg"))
    influx = start_influxd(work / "influxd")
    pg = start_postgres(work / "pg", cleanup_mode="delete")
    try:
        values = SERIES * FIELDS * days * 1440
        log(
            f"synthetic plant: {SERIES} series x {FIELDS} fields at 1-minute resolution for "
            f"{days} days = {values:,} values, {hours:,} hourly partitions"
        )
        load_s = load_influx(influx, days)
        log(f"  loaded into influxd in {load_s:.1f}s")
        project = copy_project(work / "project")
        plant = project / "data_platform" / "defs" / "plants" / "migrated"
        plant.mkdir(parents=True)
        (plant / "defs.yaml").write_text(PLANT_YAML)
        env = {
            "WAREHOUSE_URL": pg.create_database("migrate"),
            "INFLUX_URL": influx.url,
            "DATA_PLATFORM_SANDBOX": "bench",
        }
        wall = launch(project, env, "--partition-range", f"{partition(0)}...{partition(hours - 1)}")
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        figures = run_figures(project / ".dagster_home")
        log("")
        log("| measure | figure |")
        log("|---|---|")
        log(f"| runs launched (instance) | {figures['runs']} ({', '.join(figures['statuses'])}) |")
        log(f"| wall time of the one `dg launch` | {wall:.1f} s |")
        log(f"| values/s over the wall time | {values / wall:,.0f} |")
        log(f"| peak RSS of the `dg launch` tree | {rss_mb:.0f} MB |")
        log(
            f"| in-run ingest (metadata) | {figures['values_per_second']:,.0f} values/s, "
            f"{figures['rows']:,} rows |"
        )
        log(f"| rollup steps in the run | {figures['rollup_s']:.1f} s |")
        for step, seconds in sorted(figures["steps"].items()):
            log(f"|   step {step} | {seconds:.1f} s |")
        ideal = values / max(figures["values_per_second"], 1.0) + figures["rollup_s"]
        log("")
        log(
            f"target: runs <= 2: {figures['runs']} ({'met' if figures['runs'] <= 2 else 'missed'}); "
            f"wall <= 1.5 x (values / in-run throughput + rollup refresh) = 1.5 x {ideal:.1f} s: "
            f"{wall / ideal:.2f}x ({'met' if wall <= 1.5 * ideal else 'missed'})"
        )
        if args.single_runs > 0:
            singles = [
                launch(project, env, "--partition", partition(h * (hours // args.single_runs)))
                for h in range(args.single_runs)
            ]
            mean = sum(singles) / len(singles)
            log("")
            log(
                f"per-partition way: {len(singles)} single-partition `dg launch` runs, "
                f"{mean:.1f} s each; x {hours:,} partitions = {mean * hours / 3600:.1f} h "
                f"(x 8,760 for a year = {mean * 8760 / 3600:.1f} h), {mean * hours / wall:.0f}x "
                "the one run"
            )
    finally:
        influx.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
