"""Benchmark of InfluxIngestComponent against the raw limits of the same machine.

Loads a synthetic plant (100 series x 3 fields x 20,000 points = 6 M values over 10 hours) into
a throwaway influxd, then measures in one go:

- the component in a real Dagster run (one daily window holding all 6 M values): values/s
  inside the run, the run's wall time and its peak RSS; and the peak RSS of a run over a window
  10x smaller (one hour);
- reading alone: `/query` streamed and parsed in the fastest format the server offers;
- writing alone: binary COPY of the same number of rows into an unindexed table;
- the naive baseline: row-by-row `INSERT ... ON CONFLICT` with one commit, on a subset;
- a 24-partition backfill as one run against single-partition runs (`dg launch` each).

Usage: `just bench-ingest` (`--quick` for a 10x smaller plant, `--single-runs N`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = datetime(2024, 5, 1, tzinfo=UTC)
NS = 1_000_000_000


def log(text: str) -> None:
    print(text, flush=True)


def plant_lines(series: int, points: int, span: timedelta):
    step_ns = int(span.total_seconds() * NS) // points
    t0 = int(START.timestamp()) * NS
    for i in range(points):
        t = t0 + i * step_ns
        for s in range(series):
            yield (
                f"plant,site=s{s % 10},device=d{s} p={(i * 7 + s) % 1000 * 0.5},"
                f"q={(i + s) % 97}i,t={20 + (i % 50) * 0.1} {t}"
            )


def load_influx(influx, db: str, series: int, points: int, span: timedelta) -> float:
    influx.create_database(db)
    started = time.perf_counter()
    batch: list[str] = []
    for line in plant_lines(series, points, span):
        batch.append(line)
        if len(batch) == 20_000:
            influx.write_lines(db, "\n".join(batch))
            batch.clear()
    if batch:
        influx.write_lines(db, "\n".join(batch))
    return time.perf_counter() - started


def component_for(influx_url: str, db: str, granularity: str, name: str = "bench"):
    from data_platform.lib.influx.component import InfluxIngestComponent

    return InfluxIngestComponent.model_validate(
        {
            "name": name,
            "influx": {"url": influx_url, "database": db, "chunk_size": 10_000},
            "measurements": [{"name": "plant"}],
            "target": {"schema": "bench", "table": f"hist_{name}", "registry_table": f"tag_{name}"},
            "partitions": {"start": "2024-05-01", "granularity": granularity},
        }
    )


def child_run(args: argparse.Namespace) -> None:
    """One real Dagster run of the component in this process; prints JSON figures."""
    import dagster as dg
    from dagster.components.testing.utils import component_defs

    from data_platform.lib.warehouse import WarehouseResource

    component = component_for(args.influx, args.db, args.granularity, args.name)
    defs = component_defs(component=component)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    ingest = [a for a in assets if a.partitions_def is not None]
    tags = {}
    if args.range_end:
        tags = {
            "dagster/asset_partition_range_start": args.partition,
            "dagster/asset_partition_range_end": args.range_end,
        }
    started = time.perf_counter()
    result = dg.materialize(
        ingest,
        partition_key=None if args.range_end else args.partition,
        tags=tags,
        resources={"warehouse": WarehouseResource(url=args.pg)},
        raise_on_error=True,
    )
    wall = time.perf_counter() - started
    meta = {}
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
    steps = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    step_s = steps[0].event_specific_data.duration_ms / 1000 if steps else wall  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "wall_s": wall,
                "step_s": step_s,
                "rows": meta.get("rows_written"),
                "values_per_s": meta.get("values_per_second"),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(**kwargs: str) -> dict:
    cmd = [sys.executable, __file__, "child"]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", value]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": ""}
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_only(influx_url: str, db: str, span: timedelta) -> tuple[float, int, str]:
    from data_platform.lib.influx.reader.client import InfluxClient
    from data_platform.lib.influx.reader.query import SeriesQuery
    from data_platform.lib.influx.reader.settings import InfluxSettings
    from data_platform.lib.timing.window import Window

    settings = InfluxSettings(url=influx_url, database=db, chunk_size=10_000)
    with InfluxClient(settings, source="bench") as client:
        started = time.perf_counter()
        values = 0
        for batch in client.stream_window(
            SeriesQuery("plant", Window(START, START + span + timedelta(hours=1)))
        ):
            for row in batch.rows:
                values += sum(1 for v in row[1:] if v is not None)
        elapsed = time.perf_counter() - started
        return values / elapsed, values, str(client.wire_format)


def copy_only(pg_url: str, values: int) -> float:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "CREATE UNLOGGED TABLE IF NOT EXISTS bench_copy (ts timestamptz, tag_id int, "
            "value float8, value_text text, qc int2, meta jsonb)"
        )
        conn.execute("TRUNCATE bench_copy")
        conn.commit()
        base = 768_000_000_000_000
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_copy (ts, tag_id, value, value_text, qc, meta) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int8", "int4", "float8", "text", "int2", "jsonb"])
            write_row = copy.write_row
            for i in range(values):
                write_row((base + i, i % 300, i * 0.5, None, 0, None))
        conn.commit()
        return values / (time.perf_counter() - started)


def naive_inserts(pg_url: str, values: int) -> float:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_naive (ts timestamptz, tag_id int, value float8, "
            "PRIMARY KEY (tag_id, ts))"
        )
        conn.execute("TRUNCATE bench_naive")
        conn.commit()
        t0 = START
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(values):
                cur.execute(
                    "INSERT INTO bench_naive (ts, tag_id, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (tag_id, ts) DO UPDATE SET value = EXCLUDED.value",
                    (t0 + timedelta(seconds=i // 300), i % 300, i * 0.5),
                )
        conn.commit()
        return values / (time.perf_counter() - started)


def launch_comparison(influx_url: str, db: str, pg_url: str, single_runs: int) -> dict:
    """24 hourly partitions: one `dg launch` of the range against single-partition launches."""
    project = Path(tempfile.mkdtemp(prefix="bench-project-"))
    try:
        for rel in ("pyproject.toml", "data_platform"):
            src = ROOT / rel
            if src.is_dir():
                shutil.copytree(
                    src, project / rel, ignore=shutil.ignore_patterns("__pycache__", "defs")
                )
            else:
                shutil.copy2(src, project / rel)
        defs_dir = project / "data_platform" / "defs" / "bench24"
        defs_dir.mkdir(parents=True)
        (project / "data_platform" / "defs" / "__init__.py").write_text("")
        (defs_dir / "defs.yaml").write_text(
            "type: data_platform.lib.InfluxIngestComponent\nattributes:\n  name: bench24\n"
            f"  influx: {{url: '{influx_url}', database: '{db}'}}\n"
            "  measurements: [{name: plant}]\n"
            "  target: {schema: bench, table: hist24, registry_table: tag24}\n"
            "  partitions: {start: '2024-05-01', granularity: hourly}\n"
        )
        home = project / ".dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(project),
            "WAREHOUSE_URL": pg_url,
        }
        dg_bin = str(Path(sys.executable).with_name("dg"))

        def launch(*args: str) -> float:
            started = time.perf_counter()
            out = subprocess.run(
                [dg_bin, "launch", "--assets", "bench24/plant", *args],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"dg launch failed:\n{out.stderr[-3000:]}")
            return time.perf_counter() - started

        one_run = launch("--partition-range", "2024-05-01-00:00...2024-05-01-23:00")
        singles = [launch("--partition", f"2024-05-01-{h:02d}:00") for h in range(single_runs)]
        return {
            "range_run_s": one_run,
            "single_runs_measured": len(singles),
            "single_run_mean_s": sum(singles) / len(singles),
        }
    finally:
        shutil.rmtree(project, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "child"])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller plant")
    parser.add_argument(
        "--single-runs",
        type=int,
        default=3,
        help="single-partition dg launches to time (24 for all)",
    )
    parser.add_argument("--influx")
    parser.add_argument("--db")
    parser.add_argument("--pg")
    parser.add_argument("--partition")
    parser.add_argument("--range-end")
    parser.add_argument("--granularity", default="daily")
    parser.add_argument("--name", default="bench")
    args = parser.parse_args()
    if args.mode == "child":
        child_run(args)
        return

    from data_platform.utils.local_servers import start_influxd, start_postgres

    series, fields, points = 100, 3, 20_000
    if args.quick:
        points = 2_000
    span = timedelta(hours=10)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(work / "xdg"))
    influx = start_influxd(work / "influxd")
    pg = start_postgres(work / "pg", cleanup_mode="delete")
    try:
        pg_url = pg.create_database("bench")
        total = series * fields * points
        log(
            f"synthetic plant: {series} series x {fields} fields x {points:,} points = {total:,} values over {span}"
        )
        load_s = load_influx(influx, "plant", series, points, span)
        log(f"  loaded into influxd in {load_s:.1f}s ({series * points / load_s:,.0f} points/s)")

        big = run_child(
            influx=influx.url,
            db="plant",
            pg=pg_url,
            partition="2024-05-01",
            granularity="daily",
            name="big",
        )
        small = run_child(
            influx=influx.url,
            db="plant",
            pg=pg_url,
            partition="2024-05-01-02:00",
            granularity="hourly",
            name="small",
        )
        read_rate, read_values, wire = read_only(influx.url, "plant", span)
        write_rate = copy_only(pg_url, total)
        naive_n = min(100_000, total)
        naive_rate = naive_inserts(pg_url, naive_n)

        slower = min(read_rate, write_rate)
        in_run = big["rows"] / big["step_s"]
        log("")
        log("| measure | figure |")
        log("|---|---|")
        log(
            f"| component, in-run (one {big['rows']:,}-value window) | {in_run:,.0f} values/s (step {big['step_s']:.1f} s) |"
        )
        log(f"| component, run wall time | {big['wall_s']:.1f} s |")
        log(
            f"| peak RSS, full window / window 10x smaller | {big['peak_rss_mb']:.0f} MB / {small['peak_rss_mb']:.0f} MB |"
        )
        log(
            f"| raw read (/query, {wire}, parsed, {read_values:,} values) | {read_rate:,.0f} values/s |"
        )
        log(f"| raw write (binary COPY, unindexed) | {write_rate:,.0f} values/s |")
        log(f"| naive INSERT ... ON CONFLICT ({naive_n:,} values) | {naive_rate:,.0f} values/s |")
        log("")
        ratios = {
            "in-run / slower raw limit (target >= 0.25)": in_run / slower,
            "in-run / naive (target >= 20)": in_run / naive_rate,
            "RSS full / RSS 10x smaller window (target <= 1.5)": big["peak_rss_mb"]
            / small["peak_rss_mb"],
        }
        for label, value in ratios.items():
            log(f"{label}: {value:.2f}")

        if args.single_runs > 0:
            load_influx(influx, "plant24", 20, 24 * 60, timedelta(hours=24))
            cmp = launch_comparison(influx.url, "plant24", pg_url, args.single_runs)
            estimate = cmp["single_run_mean_s"] * 24
            basis = (
                "measured"
                if cmp["single_runs_measured"] == 24
                else (f"mean of {cmp['single_runs_measured']} x 24")
            )
            log("")
            log(f"24-partition backfill as one dg launch run: {cmp['range_run_s']:.1f} s")
            log(
                f"24 single-partition dg launch runs: {estimate:.1f} s ({basis}; "
                f"{cmp['single_run_mean_s']:.1f} s each)"
            )
            log(f"ratio: {estimate / cmp['range_run_s']:.1f}x")
    finally:
        influx.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
