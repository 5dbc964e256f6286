"""Benchmark of InfluxIngestComponent against the limit of the same machine, in the same run.

Loads a synthetic plant (100 series x 3 fields x 20,000 points = 6 M values over 10 hours) into
a throwaway influxd, then measures:

- the component in a real Dagster run (one daily window holding all 6 M values): values/s
  inside the run, where its time went (the materialization's `seconds`), the run's wall time
  and its peak RSS; and the peak RSS of a run over a window 10x smaller (one hour);
- (a) reading alone: `/query` streamed and decoded as a run reads it (msgpack into columns where
  the rows allow, `stream_window_columns`);
- (b) writing alone: binary COPY of the same values, encoded beforehand, into the historian's
  own value table (`ensure_tables`: unique (tag_id, ts) index and BRIN on ts);
- (c) (a) and (b) at once, in two processes started together, sharing the cores as a run does:
  the limit, values / the slower of the two; `limit ratio` = in-run values/s / (c);
- the naive baseline: row-by-row `INSERT ... ON CONFLICT` with one commit, on a subset;
- the same component run on the TimescaleDB test engine (PGlite + TimescaleDB under Node);
- a 24-partition backfill as one run against single-partition runs (`dg launch` each).

(a), (b) and (c) run `--repeat` times (medians printed). Usage: `just bench-ingest`
(`--quick` for a 10x smaller plant, `--single-runs N`, `--timescale off`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
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

    from data_platform.lib.historian import copy, vectors
    from data_platform.lib.warehouse import WarehouseResource

    copy.SEND_AHEAD, copy.SEND_BUFFER_BYTES = args.send_ahead, args.send_buffer
    if args.per_value:
        vectors.MIN_ROWS = 1 << 62
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
        resources={
            "warehouse": WarehouseResource(url=args.pg, prepared_statements=not args.no_prepare)
        },
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
                "seconds": meta.get("seconds"),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(**kwargs: str) -> dict:
    """One component run in a child process; `no_prepare="yes"` turns prepared statements off."""
    no_prepare = kwargs.pop("no_prepare", "")
    cmd = [sys.executable, __file__, "child"] + (["--no-prepare"] if no_prepare else [])
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", value]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": ""}
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_limit(args: argparse.Namespace) -> dict:
    """(a): the window streamed and parsed by the reader as a run reads it (into columns where
    msgpack allows), every value counted."""
    from data_platform.lib.influx.reader.client import InfluxClient
    from data_platform.lib.influx.reader.model import SeriesColumns
    from data_platform.lib.influx.reader.query import SeriesQuery
    from data_platform.lib.influx.reader.settings import InfluxSettings
    from data_platform.lib.timing.window import Window

    settings = InfluxSettings(url=args.influx, database=args.db, chunk_size=10_000)
    with InfluxClient(settings, source="bench") as client:
        client.list_measurements()  # connected before the start
        await_start()
        started = time.perf_counter()
        values = 0
        for batch in client.stream_window_columns(
            SeriesQuery("plant", Window(START, START + timedelta(days=1)))
        ):
            if isinstance(batch, SeriesColumns):
                for column in batch.values:
                    if column.values is not None:
                        valid = column.valid
                        values += len(batch) if valid is None else int(valid.sum())
                continue
            for row in batch.rows:
                values += sum(1 for v in row[1:] if v is not None)
        elapsed = time.perf_counter() - started
        return {"values": values, "seconds": elapsed, "wire": str(client.wire_format)}


def copy_limit(args: argparse.Namespace) -> dict:
    """(b): the plant's values, encoded beforehand, binary-copied into the historian's table."""
    import numpy as np
    import psycopg
    from psycopg import sql

    from data_platform.lib.historian.copy import _SIGNATURE, _TRAILER, copy_statement
    from data_platform.lib.historian.tables import HistorianTables, ensure_tables
    from data_platform.lib.historian.vectors import encode_numbers

    series, points, step_ns = 100, args.points, 36_000 * NS // args.points
    t0 = int(START.timestamp()) * NS
    chunks = [_SIGNATURE]
    for c in range(0, points, 10_000):  # the reader's chunks: one series, 10,000 points
        i = np.arange(c, min(points, c + 10_000), dtype=np.int64)
        us = (t0 + i * step_ns) // 1000
        for s in range(series):
            for f, values in enumerate(((i * 7 + s) % 1000 * 0.5, (i + s) % 97, 20 + i % 50 * 0.1)):
                chunks.append(encode_numbers(s * 3 + f + 1, values.astype(float), us, us * 0))
    chunks.append(_TRAILER)
    tables = HistorianTables("limits", f"hist_{os.getpid()}")
    with psycopg.connect(args.pg) as conn:
        ensure_tables(conn, tables, registry=False)
        conn.commit()
        await_start()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(copy_statement(tables.hist)) as copy:
            for chunk in chunks:
                copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute(sql.SQL("DROP TABLE {}").format(tables.hist))
        conn.commit()
    return {"values": series * 3 * points, "seconds": elapsed}


def await_start() -> None:
    """Say ready, then wait for the word to start (so (c)'s two processes start together)."""
    print("ready", flush=True)
    sys.stdin.readline()


def limits(influx_url: str, pg_url: str, points: int) -> tuple[dict, dict, dict]:
    """(a) alone, (b) alone, then (a) and (b) at once, each in processes of their own."""

    def start(mode: str) -> subprocess.Popen:
        cmd = [sys.executable, __file__, mode, "--influx", influx_url, "--db", "plant"]
        cmd += ["--pg", pg_url, "--points", str(points)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def finish(*procs: subprocess.Popen) -> list[dict]:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit("a limit measurement failed")
        return out

    read = finish(start("read"))[0]
    write = finish(start("copy"))[0]
    both = finish(start("read"), start("copy"))
    return read, write, {"values": read["values"], "seconds": max(b["seconds"] for b in both)}


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "mode", nargs="?", default="bench", choices=["bench", "child", "read", "copy"]
    )
    parser.add_argument("--quick", action="store_true", help="a 10x smaller plant")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a), (b) and (c)")
    parser.add_argument("--timescale", default="on", choices=["on", "off"], help="the engine run")
    parser.add_argument("--no-prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--send-ahead", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--per-value", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--send-buffer", type=int, default=4 << 20, help=argparse.SUPPRESS)
    parser.add_argument(
        "--single-runs",
        type=int,
        default=3,
        help="single-partition dg launches to time (24 for all, 0 for none)",
    )
    for name in ("--influx", "--db", "--pg", "--partition", "--range-end"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=20_000, help=argparse.SUPPRESS)
    parser.add_argument("--granularity", default="daily", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "child":
        child_run(args)
        return
    if args.mode in ("read", "copy"):
        print(json.dumps((read_limit if args.mode == "read" else copy_limit)(args)))
        return
    bench(args)


def bench(args: argparse.Namespace) -> None:
    from data_platform.utils.local_servers import start_influxd, start_postgres

    series, fields, points = 100, 3, 2_000 if args.quick else 20_000
    span = timedelta(hours=10)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(work / "xdg"))
    influx = start_influxd(work / "influxd")
    pg = start_postgres(work / "pg", cleanup_mode="delete")
    try:
        pg_url = pg.create_database("bench")
        total = series * fields * points
        log(
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
        )
        log(
            f"synthetic plant: {series} series x {fields} fields x {points:,} points = {total:,} values over {span}"
        )
        load_s = load_influx(influx, "plant", series, points, span)
        log(f"  loaded into influxd in {load_s:.1f}s ({series * points / load_s:,.0f} points/s)")
        windows = {"partition": "2024-05-01", "granularity": "daily", "db": "plant"}
        big = run_child(**windows, influx=influx.url, pg=pg_url, name="big")
        small = run_child(
            influx=influx.url,
            db="plant",
            pg=pg_url,
            partition="2024-05-01-02:00",
            granularity="hourly",
            name="small",
        )
        runs = [limits(influx.url, pg_url, points) for _ in range(args.repeat)]
        read, write, both = (
            statistics.median(r[k]["values"] / r[k]["seconds"] for r in runs) for k in range(3)
        )
        wire = runs[0][0]["wire"]
        naive_n = min(100_000, total)
        naive_rate = naive_inserts(pg_url, naive_n)
        in_run = big["rows"] / big["step_s"]
        log("")
        log("| measure | figure |")
        log("|---|---|")
        log(
            f"| component, in-run (one {big['rows']:,}-value window, whole step incl. checks) | {in_run:,.0f} values/s (step {big['step_s']:.1f} s) |"
        )
        log(f"| component, run wall time | {big['wall_s']:.1f} s |")
        log(
            f"| peak RSS, full window / window 10x smaller | {big['peak_rss_mb']:.0f} MB / {small['peak_rss_mb']:.0f} MB |"
        )
        log(f"| (a) reading alone (/query, {wire}, parsed) | {read:,.0f} values/s |")
        log(
            f"| (b) binary COPY alone into the historian's table and indexes | {write:,.0f} values/s |"
        )
        log(f"| (c) (a) and (b) at once, separate processes | {both:,.0f} values/s |")
        log(f"| naive INSERT ... ON CONFLICT ({naive_n:,} values) | {naive_rate:,.0f} values/s |")
        log(f"(a), (b), (c): medians of {args.repeat}")
        log("")
        log(f"where the in-run step's {big['step_s']:.1f} s went:")
        for step, seconds in (big["seconds"] or {}).items():
            log(f"  {step:<9} {seconds:7.2f} s")
        log("")
        ratios = {
            "limit ratio": in_run / both,
            "in-run / naive (target >= 20)": in_run / naive_rate,
            "RSS full / RSS 10x smaller window (target <= 1.5)": big["peak_rss_mb"]
            / small["peak_rss_mb"],
        }
        for label, value in ratios.items():
            log(f"{label}: {value:.2f}")
        if args.timescale == "on":
            timescale_run(influx.url, windows)
        if args.single_runs > 0:
            backfill_comparison(influx, pg_url, args.single_runs)
    finally:
        influx.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def timescale_run(influx_url: str, windows: dict[str, str]) -> None:
    """The same component run on the TimescaleDB test engine (a hypertable)."""
    sys.path.insert(0, str(ROOT))
    from data_platform_tests.timescale_engine import start_timescale_engine

    with start_timescale_engine() as engine:
        run = run_child(**windows, influx=influx_url, pg=engine.url, name="ts", no_prepare="yes")
    log("")
    log(
        f"TimescaleDB engine (PGlite, single session): {run['rows']:,} values in {run['step_s']:.1f} s "
        f"= {run['rows'] / run['step_s']:,.0f} values/s in-run"
    )
    for step, seconds in (run["seconds"] or {}).items():
        log(f"  {step:<9} {seconds:7.2f} s")


def backfill_comparison(influx, pg_url: str, single_runs: int) -> None:
    load_influx(influx, "plant24", 20, 24 * 60, timedelta(hours=24))
    cmp = launch_comparison(influx.url, "plant24", pg_url, single_runs)
    estimate = cmp["single_run_mean_s"] * 24
    measured = cmp["single_runs_measured"]
    basis = "measured" if measured == 24 else f"mean of {measured} x 24"
    log("")
    log(f"24-partition backfill as one dg launch run: {cmp['range_run_s']:.1f} s")
    log(
        f"24 single-partition dg launch runs: {estimate:.1f} s ({basis}; "
        f"{cmp['single_run_mean_s']:.1f} s each)"
    )
    log(f"ratio: {estimate / cmp['range_run_s']:.1f}x")


if __name__ == "__main__":
    main()
