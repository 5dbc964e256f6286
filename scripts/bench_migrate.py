"""Benchmark of a migration: a year of a synthetic plant backfilled with its rollups.

A synthetic plant (20 series x 2 fields at 1-minute resolution; a year is about 21 M values) in
a throwaway influxd, one dropped `defs.yaml` in a temp copy of the project writing the sample
raw table (the sample rollups pick it up through `all_writers`), backfilled as a user would:
ONE `dg launch --assets "key:migrated/plant or key:rollups/*" --partition-range A...B`.

Prints runs launched (counted in the instance), wall time, values/s, peak RSS of the
`dg launch` process tree (resource.getrusage(RUSAGE_CHILDREN)), where the wall time went (the
run's event log: consecutive events timed into phases), and the per-partition way: a few
single-partition `dg launch` runs, their mean extrapolated to every partition. The target:
runs <= 2 and wall <= 1.5 x (values / in-run ingest throughput + rollup refresh time), with the
in-run throughput from the ingest materialization's `values_per_second` metadata, and the
refresh time both as the rollups' own `refresh_seconds` metadata and as the rollup step's
duration (which also holds Dagster's writes of the step's events).

Dagster's instance: `--instance sqlite` (default: the bare DAGSTER_HOME of a local `dg launch`)
or `postgres` (as deploy/dagster.yaml: a database of the local PostgreSQL server), and the
instance settings a migration can use: `--event-batch N` (DAGSTER_EVENT_BATCH_SIZE),
`--planned-subset` (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS), `--in-process` (the
in_process executor: no process per step).

Usage: `just bench-migrate` (`--quick` for 2 weeks, `--days N`, `--single-runs N`, `--profile
FILE` for py-spy's raw stacks of the launch, `--keep` to keep the instance).
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


def launch(project: Path, env: dict[str, str], *args: str, profile: Path | None = None) -> float:
    from data_platform_tests import project_copy

    command = ["launch", "--assets", ASSETS, *args]
    real = project_copy.DG
    if profile is not None:  # sampled by py-spy, the step workers (subprocesses) included
        command = ["record", "--subprocesses", "--format", "raw", "--rate", "50"]
        command += ["-o", str(profile), "--", real, "launch", "--assets", ASSETS]
        command += list(args)
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            raise SystemExit("--profile needs py-spy in the environment: uv pip install py-spy")
        project_copy.DG = str(spy)
    started = time.perf_counter()
    try:
        result = project_copy.dg(project, *command, env=env, timeout=6 * 3600)
    finally:
        project_copy.DG = real
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
        refresh_s = 0.0
        materialized: dict[str, int] = {}
        for key in instance.get_asset_keys():
            if key.path[0] not in ("rollups", "migrated"):
                continue
            materialized[key.to_user_string()] = len(instance.get_materialized_partitions(key))
            if key.path[0] == "rollups":
                latest = instance.fetch_materializations(key, limit=1).records
                event = latest[0].asset_materialization if latest else None
                if event is not None and "refresh_seconds" in event.metadata:
                    refresh_s += float(event.metadata["refresh_seconds"].value)  # type: ignore[arg-type]
        return {
            "refresh_s": refresh_s,
            "materialized": materialized,
            "runs": len(runs),
            "statuses": sorted({str(r.status.value) for r in runs}),
            "values_per_second": float(meta["values_per_second"].value) if meta else 0.0,  # type: ignore[arg-type]
            "rows": int(meta["rows_written"].value) if meta else 0,  # type: ignore[arg-type]
            "rollup_s": rollup_s,
            "steps": steps,
        }


def phases(home: Path, launched_at: float, ended_at: float) -> list[str]:
    """Where the one run's wall time went, from its event log: consecutive events of one type
    and step collapsed into one line (count, first to last), with the gaps between them."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = instance.get_runs()[-1]
        entries = instance.all_logs(first.run_id)
    groups: list[list[Any]] = []  # [type, step, count, first ts, last ts]
    for entry in entries:
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "log"
        step = entry.step_key or "-"
        if groups and groups[-1][0] == kind and groups[-1][1] == step:
            groups[-1][2] += 1
            groups[-1][4] = entry.timestamp
        else:
            groups.append([kind, step, 1, entry.timestamp, entry.timestamp])
    lines = [f"{len(entries):,} events in the run's event log; where the wall time went:"]
    spent: dict[str, float] = {}
    previous_ts, previous_kind = launched_at, ""
    for entry in entries:
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "log"
        phase = _phase(kind, previous_kind)
        spent[phase] = spent.get(phase, 0.0) + entry.timestamp - previous_ts
        previous_ts, previous_kind = entry.timestamp, kind
    spent["run end and process exit"] = ended_at - previous_ts
    for phase, seconds in spent.items():
        lines.append(f"  {phase}: {seconds:.1f} s")
    lines.append("the event log, collapsed (slow groups):")
    previous = launched_at
    for kind, step, count, start, end in groups:
        if start - previous < 0.3 and end - start < 0.3 and count < 10:
            previous = end
            continue  # the quick events between the slow ones
        lines.append(
            f"  +{start - launched_at:7.1f}s (gap {start - previous:5.1f}s) {kind} x{count}"
            f" [{step}] over {end - start:.1f}s"
        )
        previous = end
    lines.append(f"  +{ended_at - launched_at:7.1f}s (gap {ended_at - previous:5.1f}s) exit")
    return lines


_WORKER_EVENTS = {"STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "RESOURCE_INIT_STARTED"}
_WORKER_EVENTS |= {"RESOURCE_INIT_SUCCESS", "LOGS_CAPTURED", "STEP_START"}


def _phase(kind: str, previous: str) -> str:
    """The phase the time up to an event of `kind` (after one of `previous`) belongs to."""
    if not previous:
        return "process start, code loading, run creation"
    if kind.endswith("_PLANNED"):
        return "planned-materialization events (per partition and asset)"
    if kind in _WORKER_EVENTS:
        return "step workers: process start, code loading"
    if kind == "ASSET_MATERIALIZATION":
        return "materialization events (per partition and asset)"
    if kind in ("STEP_OUTPUT", "ASSET_CHECK_EVALUATION"):
        return "the components' own work (ingest, refresh, checks)"
    return "other run events"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 weeks instead of a year")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy's raw stacks of the launch, to FILE"
    )
    parser.add_argument(
        "--planned-subset",
        action="store_true",
        help="DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1: one planned event per asset "
        "for the range (a failed run then does not mark its partitions failed)",
    )
    parser.add_argument(
        "--event-batch",
        type=int,
        default=0,
        help="DAGSTER_EVENT_BATCH_SIZE: write a range's materialization events in batches of N "
        "(one INSERT a batch with PostgreSQL storage; SQLite writes them one by one anyway)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the steps in the run worker (in_process executor) instead of one process each",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (instance)")
    parser.add_argument(
        "--instance",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Dagster's storage: a bare DAGSTER_HOME's SQLite files, or PostgreSQL as in "
        "deploy/dagster.yaml (a database of the same local server)",
    )
    args = parser.parse_args()
    days = args.days or (14 if args.quick else 365)
    hours = days * 24

    from data_platform.utils.local_servers import start_influxd, start_postgres
    from data_platform_tests.project_copy import copy_project

    log(f"load average {os.getloadavg()[0]:.1f} at the start")
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
        home = project / ".dagster_home"
        if args.instance == "postgres":
            home = work / "dagster_home"
            home.mkdir()
            url = pg.create_database("dagster").replace("postgresql://", "postgresql+psycopg2://")
            (home / "dagster.yaml").write_text(
                f"storage:\n  postgres:\n    postgres_url: {url!r}\ntelemetry:\n  enabled: false\n"
            )
            env["DAGSTER_HOME"] = str(home)
        if args.event_batch:
            env["DAGSTER_EVENT_BATCH_SIZE"] = str(args.event_batch)
        if args.planned_subset:
            env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
        log(f"  Dagster instance: {args.instance} ({home})")
        executor = (
            ["--config-json", '{"execution": {"config": {"in_process": {}}}}']
            if args.in_process
            else []
        )
        launched_at = time.time()
        span = f"{partition(0)}...{partition(hours - 1)}"
        wall = launch(project, env, "--partition-range", span, *executor, profile=args.profile)
        ended_at = time.time()
        log(f"  load average {os.getloadavg()[0]:.1f} at the end of the run")
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        figures = run_figures(home)
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
        log(f"| rollup refresh (metadata `refresh_seconds`) | {figures['refresh_s']:.1f} s |")
        for key, count in sorted(figures["materialized"].items()):
            log(f"|   partitions materialized, {key} | {count:,} of {hours:,} |")
        for step, seconds in sorted(figures["steps"].items()):
            log(f"|   step {step} | {seconds:.1f} s |")
        log("")
        for line in phases(home, launched_at, ended_at):
            log(line)
        ingest_s = values / max(figures["values_per_second"], 1.0)
        log("")
        log(f"target: runs <= 2: {figures['runs']} ({'met' if figures['runs'] <= 2 else 'missed'})")
        for what, refresh in (
            ("rollup refresh_seconds", figures["refresh_s"]),
            ("rollup steps' durations", figures["rollup_s"]),
        ):
            ideal = ingest_s + refresh
            log(
                f"target: wall <= 1.5 x (values / in-run throughput + {what}) = 1.5 x "
                f"({ingest_s:.1f} + {refresh:.1f}) s = {1.5 * ideal:.1f} s: wall is "
                f"{wall / ideal:.2f}x ({'met' if wall <= 1.5 * ideal else 'missed'})"
            )
        if args.single_runs > 0:
            singles = [
                launch(
                    project,
                    env,
                    "--partition",
                    partition(h * (hours // args.single_runs)),
                    *executor,
                )
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
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
