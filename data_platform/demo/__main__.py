"""`python -m data_platform.demo up`: the platform on embedded servers with a sample plant.

- Warehouse: WAREHOUSE_URL if set, else an embedded PostgreSQL kept in `.data/pg` (reused).
- Sources: INFLUX_URL if set; else a throwaway `influxd` (when installed) loaded with the
  sample; else the sample as line-protocol export files in `.data/sample`.
- Then the sample's recent windows are materialized in real runs on the local Dagster instance
  (DAGSTER_HOME), late points arrive, and `dg dev` serves the UI until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from data_platform.demo.sample import (
    PLANTS,
    late_lines,
    plant_lines,
    sample_window,
    write_export_files,
)
from data_platform.utils.local_servers import (
    LocalInfluxd,
    free_port,
    influxd_binary,
    start_postgres,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA = PROJECT_ROOT / ".data"


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def start_servers(stack: ExitStack, hours: int, source: str = "auto") -> dict[str, str]:
    """Start what is not configured; returns the variables that point the platform at it."""
    env: dict[str, str] = {}
    now = datetime.now(UTC)
    if not os.environ.get("WAREHOUSE_URL"):
        pg = start_postgres(DATA / "pg", cleanup_mode="stop")
        stack.callback(pg.stop)
        env["WAREHOUSE_URL"] = pg.create_database("warehouse")
        log(f"embedded PostgreSQL in {DATA / 'pg'}")
    if os.environ.get("INFLUX_URL"):
        log(f"reading InfluxDB at {os.environ['INFLUX_URL']}")
    elif source != "files" and influxd_binary():
        influx = LocalInfluxd(root=DATA / "influxd", http_port=free_port(), rpc_port=free_port())
        influx.start()
        stack.callback(influx.stop)
        start, end = sample_window(now, hours)
        for plant in PLANTS:
            influx.create_database(plant.name)
            influx.write_lines(plant.name, "\n".join(plant_lines(plant, start, end)))
        env["INFLUX_URL"] = influx.url
        log(f"throwaway influxd at {influx.url} with {hours} h of sample data")
    else:
        paths = write_export_files(DATA / "sample", now, hours)
        log(f"no influxd installed: reading line-protocol exports {', '.join(map(str, paths))}")
    return env


def materialize_sample(hours: int) -> None:
    """Real runs on the local instance: registries, then the sample's windows, then rollups."""
    import dagster as dg

    from data_platform.definitions import defs as project_defs

    defs: dg.Definitions = project_defs()  # type: ignore[call-arg]
    instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    unpartitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is None]
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    start, end = sample_window(datetime.now(UTC), hours)
    first = start.strftime("%Y-%m-%d-%H:%M")
    last = (end - timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
    job = defs.resolve_implicit_global_asset_job_def()
    for selection, tags, what in (
        (unpartitioned, {}, "signal registries"),
        (
            partitioned,
            {
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            f"windows {first} .. {last}",
        ),
    ):
        if not selection:
            continue
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags=tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        state = "ok" if result.success else "FAILED"
        log(f"{what}: run {result.run_id[:8]} {state} in {time.perf_counter() - started:.1f}s")
        if not result.success:
            raise SystemExit(f"demo run failed; see run {result.run_id} in the UI")


def add_late_points() -> None:
    url = os.environ.get("INFLUX_URL", "")
    if not url.startswith("http://127.0.0.1"):
        return
    influx = LocalInfluxd(root=DATA / "influxd", http_port=int(url.rsplit(":", 1)[1]), rpc_port=0)
    for plant in PLANTS:
        influx.write_lines(plant.name, "\n".join(late_lines(plant, datetime.now(UTC))))
    log("late points written into an ingested window; the next run of that window picks them up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_platform.demo")
    parser.add_argument(
        "command",
        choices=["up", "load"],
        help="up: load and serve the UI; load: load and materialize, then stop",
    )
    parser.add_argument("--hours", type=int, default=24, help="hours of sample history")
    parser.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    parser.add_argument(
        "--source",
        choices=["auto", "files"],
        default="auto",
        help="auto: a throwaway influxd when installed; files: the line-protocol exports",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    home_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not home_yaml.exists():
        home_yaml.write_text("telemetry:\n  enabled: false\n")
    with ExitStack() as stack:
        os.environ.update(start_servers(stack, args.hours, args.source))
        materialize_sample(args.hours)
        add_late_points()
        if args.command == "load":
            return 0
        log(f"Dagster UI on http://127.0.0.1:{args.port} (Ctrl-C stops it and the servers)")
        dg_bin = str(Path(sys.executable).with_name("dg"))
        ui = subprocess.Popen(
            [dg_bin, "dev", "--host", "127.0.0.1", "--port", str(args.port)],
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        try:
            return ui.wait()
        except KeyboardInterrupt:
            os.killpg(ui.pid, signal.SIGINT)
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
