"""How `dg check defs` scales with the number of sources: 10, 100 and 1,000 generated sources.

In a temp copy of the project (its sample plants and rollups removed, so the defs folder holds
only what is generated), each source is two YAML files in its own folder under
`data_platform/defs/bench/<source>/`:

- `ingest/defs.yaml`: an `InfluxIngestComponent` like `plants/plant_north` (3 measurements,
  templated url and schema);
- `rollups/defs.yaml`: a `TimescaleAggregateComponent` like `rollups/` over that source's
  ingest assets (15-minute, hourly and daily buckets).

For each size, and for an empty defs folder as the baseline, `dg check defs` runs as a user runs
it (a fresh `dg` process each time, so Python start-up is part of the figure) and the median
wall time of `--repeat` runs is reported with the seconds over the baseline and the cost per
source. Growth is linear when the cost per source stays flat from 100 to 1,000 sources; a
source that scanned the other sources' files would make it grow with the count instead. The
target is under 15 s for 1,000 sources on a 2-core machine.

Two more figures split the largest size's time: `dg check yaml` alone (the schema check that
`dg check defs` runs in dg's own process before any code of the project is imported), and
Dagster's floor, `dg check defs` on a project whose definitions.py declares the same assets and
checks as plain Python multi-assets, with no YAML and no components.

Loading must never contact a server: the largest size is checked once more with INFLUX_URL and
every proxy variable pointing at a local port that counts connections, and no WAREHOUSE_URL.

    .venv/bin/python scripts/bench_load.py [--sizes 10 100 1000] [--repeat N] [--profile]
        [--shims on|off]

`--shims off` loads with the Dagster shims off (`DATA_PLATFORM_DAGSTER_SHIMS=off`): Dagster's own
loader and resolution, for the figure the shims save.

`--profile` also loads the largest size's definitions in this process under cProfile and prints
where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import pstats
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from data_platform_tests.project_copy import copy_project, dg

TARGET_SOURCES = 1000
TARGET_SECONDS = 15.0
# Per-source cost at the largest size over the cost at the size before it; below this is linear.
LINEAR_RATIO = 1.25
DG_TIMEOUT = 3600.0
# `data_platform.utils.dagster_shims.switch.SWITCH`, not imported: `--profile` must import the
# copy's data_platform, not this checkout's.
SWITCH = "DATA_PLATFORM_DAGSTER_SHIMS"
# Set for every `dg` process the script runs: the shims on or off (`--shims`).
DG_ENV: dict[str, str] = {}

INGEST = Template("""\
# A generated plant for scripts/bench_load.py, shaped like plants/plant_north.
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers

attributes:
  name: $name
  source: "{{ 'influx' if env.INFLUX_URL else 'files' }}"
  influx:
    url: "{{ env.INFLUX_URL or 'http://localhost:8086' }}"
    database: $name
  files:
    paths: [".data/sample/$name.lp.gz"]
  measurements:
    - name: inverter
    - name: meter
    - name: weather
  target:
    schema: "{{ schema_for('raw') }}"
  partitions:
    start: "2025-01-01"
    granularity: hourly
    lateness: 3h
  units:
    active_power: kW
    energy: kWh
    temperature: degC
    irradiance: W/m2
  checks:
    min_gap: 10m
""")

ROLLUPS = Template("""\
# Rollups of the generated plant $name for scripts/bench_load.py, shaped like rollups/.
type: data_platform.lib.TimescaleAggregateComponent
template_vars_module: data_platform.utils.environment_helpers

attributes:
  source:
    schema: "{{ schema_for('raw') }}"
    table: influx_hist
    assets:
      - $name/inverter
      - $name/meter
      - $name/weather
  target:
    schema: "{{ schema_for('rollups') }}"
    name_prefix: $name
  partitions:
    start: "2025-01-01"
    granularity: hourly
  buckets:
    - width: 15 minutes
    - width: 1 hour
    - width: 1 day
      refresh: {start_offset: 3 days, end_offset: 1 hour, schedule_interval: 1 hour}
  aggregates: [avg, min, max, count, sum, first, last]
  materialized_only: false
  refresh: {start_offset: 6 hours, end_offset: 15 minutes, schedule_interval: 15 minutes}
  columnstore: {after: 7 days}
  retention: {drop_after: 730 days}
""")


@dataclass(frozen=True)
class Measurement:
    sources: int
    yaml_files: int
    assets: int
    seconds: float
    cpu_seconds: float

    def per_source(self, baseline: Measurement) -> float:
        """Wall seconds over the baseline, per source."""
        return (self.seconds - baseline.seconds) / self.sources

    def cpu_per_source(self, baseline: Measurement) -> float:
        return (self.cpu_seconds - baseline.cpu_seconds) / self.sources


def log(text: str) -> None:
    print(text, flush=True)


def defs_dir(project: Path) -> Path:
    return project / "data_platform" / "defs"


def empty_defs_folder(project: Path) -> None:
    """Leave only the package marker: the baseline loads no component at all."""
    for entry in defs_dir(project).iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.name != "__init__.py":
            entry.unlink()


def write_sources(project: Path, count: int) -> int:
    """Replace the generated sources with `count` new ones; returns the number of YAML files."""
    bench = defs_dir(project) / "bench"
    shutil.rmtree(bench, ignore_errors=True)
    for i in range(1, count + 1):
        name = f"site_{i:04d}"
        for folder, template in (("ingest", INGEST), ("rollups", ROLLUPS)):
            path = bench / name / folder / "defs.yaml"
            path.parent.mkdir(parents=True)
            path.write_text(template.substitute(name=name))
    return 2 * count


def check_defs(project: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """One `dg check defs`: its wall time and the CPU time of the processes it ran."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = dg(project, "check", "defs", env=DG_ENV | (env or {}), timeout=DG_TIMEOUT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"dg check defs failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def count_assets(project: Path) -> int:
    """Counted after the timed runs, in a `dg` process of its own, so it leaves them alone."""
    result = dg(project, "list", "defs", "--json", env=DG_ENV, timeout=DG_TIMEOUT)
    if result.returncode != 0:
        raise SystemExit(f"dg list defs failed:\n{result.stderr[-4000:]}")
    return len(json.loads(result.stdout[result.stdout.index("{") :])["assets"])


def measure(project: Path, sources: int, repeat: int) -> Measurement:
    yaml_files = write_sources(project, sources)
    runs = [check_defs(project) for _ in range(repeat)]
    assets = count_assets(project)
    return Measurement(
        sources=sources,
        yaml_files=yaml_files,
        assets=assets,
        seconds=statistics.median(wall for wall, _ in runs),
        cpu_seconds=statistics.median(cpu for _, cpu in runs),
    )


FLOOR_DEFINITIONS = Template('''\
"""$sources generated sources' assets and checks as plain Python: Dagster's own floor."""

import dagster as dg

HOURLY = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00", timezone="UTC")
MEASUREMENTS = ("inverter", "meter", "weather")
INGEST_CHECKS = ("reconciliation", "lag", "gaps", "schema_drift")
BUCKETS = ("15m", "1h", "1d")
ROLLUP_CHECKS = ("matches_source", "freshness", "matches_yaml")


def source(name):
    specs = [
        dg.AssetSpec([name, m], group_name=name, kinds={"influxdb", "postgres"},
                     partitions_def=HOURLY)
        for m in MEASUREMENTS
    ]
    checks = [dg.AssetCheckSpec(c, asset=s.key) for s in specs for c in INGEST_CHECKS]

    @dg.multi_asset(name=f"{name}_ingest", specs=specs, check_specs=checks, can_subset=True,
                    partitions_def=HOURLY)
    def ingest(context): ...

    @dg.multi_asset(name=f"{name}_registry", specs=[dg.AssetSpec([name, "influx_tags"])])
    def registry(context): ...

    rollups = [
        dg.AssetSpec(["rollups", f"{name}_{b}"], deps=[s.key for s in specs], group_name="rollups",
                     kinds={"timescaledb", "postgres"}, partitions_def=HOURLY)
        for b in BUCKETS
    ]
    rollup_checks = [dg.AssetCheckSpec(c, asset=s.key) for s in rollups for c in ROLLUP_CHECKS]

    @dg.multi_asset(name=f"{name}_rollups", specs=rollups, check_specs=rollup_checks,
                    can_subset=True, partitions_def=HOURLY)
    def rollup(context): ...

    return [registry, ingest, rollup]


@dg.definitions
def defs():
    return dg.Definitions(
        assets=[a for i in range(1, $sources + 1) for a in source(f"site_{i:04d}")]
    )
''')


def check_yaml_seconds(project: Path) -> float:
    """`dg check yaml` alone, on the sources generated last."""
    started = time.perf_counter()
    result = dg(project, "check", "yaml", env=DG_ENV, timeout=DG_TIMEOUT)
    if result.returncode != 0:
        raise SystemExit(f"dg check yaml failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def floor_project(root: Path, sources: int) -> Path:
    """A copy whose definitions.py declares the same assets and checks as plain Python."""
    project = copy_project(root / "floor")
    empty_defs_folder(project)
    (project / "data_platform" / "definitions.py").write_text(
        FLOOR_DEFINITIONS.substitute(sources=sources)
    )
    return project


class ConnectionCounter:
    """A local port that accepts and drops every connection, counting them.

    A closed port cannot tell a connection error that the loader swallowed from no attempt at
    all; this port refuses service just the same and records that someone tried.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        # shutdown() wakes the blocked accept(); close() alone does not on Linux.
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)


def check_no_network(project: Path) -> str:
    """`dg check defs` with every server and proxy pointing at a port that counts connections."""
    with ConnectionCounter() as counter:
        url = f"http://127.0.0.1:{counter.port}"
        proxies = ("http_proxy", "https_proxy", "all_proxy")
        env = {name: url for name in proxies} | {name.upper(): url for name in proxies}
        # The project_copy helper already drops WAREHOUSE_* and INFLUX_* from the environment.
        env |= {"INFLUX_URL": url, "no_proxy": "", "NO_PROXY": ""}
        check_defs(project, env=env)
    if counter.connections:
        raise SystemExit(
            f"loading the definitions opened {counter.connections} connection(s) to {url}"
        )
    return (
        f"INFLUX_URL, http_proxy, https_proxy and all_proxy -> {url} (a port that counts and "
        "drops connections), WAREHOUSE_URL unset: dg check defs passed, 0 connections"
    )


@dataclass(frozen=True)
class ProfiledFunction:
    ncalls: str
    tottime: float
    cumtime: float
    where: str


def short_path(path: str) -> str:
    """A profiled file relative to site-packages or the project."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/data_platform/" in path:
        return "data_platform/" + path.split("/data_platform/", 1)[1]
    return path


def profiled_functions(profiler: cProfile.Profile) -> list[ProfiledFunction]:
    profile = pstats.Stats(profiler).get_stats_profile()
    return [
        ProfiledFunction(
            ncalls=fp.ncalls,
            tottime=fp.tottime,
            cumtime=fp.cumtime,
            where=f"{short_path(fp.file_name)}:{fp.line_number}({name})",
        )
        for name, fp in profile.func_profiles.items()
    ]


def profile_load(project: Path, top: int) -> None:
    """Load the copy's definitions in this process under cProfile, as `dg check defs` does."""
    if "data_platform" in sys.modules:
        raise RuntimeError("data_platform is already imported: the profile would load the checkout")
    for name in [n for n in os.environ if n.startswith(("INFLUX_", "WAREHOUSE_"))]:
        del os.environ[name]
    os.environ["DAGSTER_HOME"] = str(project / ".dagster_home")
    os.environ["DAGSTER_IS_DEFS_VALIDATION_CLI"] = "1"
    os.environ.update(DG_ENV)
    os.chdir(project)
    sys.path.insert(0, str(project))

    import dagster as dg

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    definitions = importlib.import_module("data_platform.definitions").defs()
    dg.Definitions.validate_loadable(definitions)
    profiler.disable()
    elapsed = time.perf_counter() - started

    functions = profiled_functions(profiler)
    log(
        f"\nProfile: importing data_platform.definitions, building and validating the definitions "
        f"of the largest size in one process: {elapsed:.1f} s under cProfile "
        f"(dagster itself imported before)."
    )
    orders: dict[str, Callable[[ProfiledFunction], float]] = {
        "cumulative time": lambda f: f.cumtime,
        "own time": lambda f: f.tottime,
    }
    for title, key in orders.items():
        log(f"\nTop {top} functions by {title}:")
        log(f"{'calls':>12} {'own s':>8} {'cum s':>8}  function")
        ranked = sorted(functions, key=key, reverse=True)[:top]
        for f in ranked:
            log(f"{f.ncalls:>12} {f.tottime:>8.2f} {f.cumtime:>8.2f}  {f.where}")


def print_table(rows: list[Measurement], baseline: Measurement, repeat: int) -> None:
    log(
        f"\n`dg check defs` (Dagster shims {DG_ENV[SWITCH]}), wall time, median of {repeat} run(s) "
        "(cpu s: CPU time of the dg processes, less sensitive to other load on the machine)"
    )
    log(
        f"{'sources':>8} {'YAML files':>11} {'assets':>7} {'total s':>8} {'over base s':>12} "
        f"{'ms/source':>10} {'cpu s':>7} {'cpu ms/source':>14}"
    )
    for row in [baseline, *rows]:
        over = row.seconds - baseline.seconds
        wall_ms = f"{row.per_source(baseline) * 1000:.1f}" if row.sources else "-"
        cpu_ms = f"{row.cpu_per_source(baseline) * 1000:.1f}" if row.sources else "-"
        log(
            f"{row.sources:>8,} {row.yaml_files:>11,} {row.assets:>7,} {row.seconds:>8.1f} "
            f"{over:>12.1f} {wall_ms:>10} {row.cpu_seconds:>7.1f} {cpu_ms:>14}"
        )


def print_growth(rows: list[Measurement], baseline: Measurement) -> None:
    if len(rows) >= 2:
        small, large = rows[-2], rows[-1]
        if small.per_source(baseline) <= 0 or small.cpu_per_source(baseline) <= 0:
            log(
                f"\nGrowth: not measurable, {small.sources:,} sources cost less than the noise of "
                "the baseline (try --repeat 3 or larger sizes)"
            )
        else:
            wall = large.per_source(baseline) / small.per_source(baseline)
            cpu = large.cpu_per_source(baseline) / small.cpu_per_source(baseline)
            shape = "linear" if max(wall, cpu) < LINEAR_RATIO else "faster than linear"
            log(
                f"\nGrowth: per-source cost at {large.sources:,} / at {small.sources:,} sources = "
                f"{wall:.2f} wall, {cpu:.2f} cpu -> {shape} (linear below {LINEAR_RATIO}; a "
                "source that scanned the other sources' files would grow with the count)"
            )
    target = next((r for r in rows if r.sources == TARGET_SOURCES), None)
    if target is None:
        log(f"Target: under {TARGET_SECONDS:.0f} s for {TARGET_SOURCES:,} sources (not measured)")
        return
    verdict = "met" if target.seconds < TARGET_SECONDS else "missed"
    log(
        f"Target: under {TARGET_SECONDS:.0f} s for {TARGET_SOURCES:,} sources on a 2-core machine: "
        f"{target.seconds:.1f} s on this {os.cpu_count()}-core machine -> {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (median)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size")
    parser.add_argument("--top", type=int, default=15, help="functions shown by --profile")
    parser.add_argument(
        "--shims",
        choices=["on", "off"],
        default="on",
        help="the Dagster shims (data_platform/utils/dagster_shims): on, or off for Dagster's "
        "own loader",
    )
    args = parser.parse_args()
    DG_ENV[SWITCH] = args.shims
    sizes = sorted(set(args.sizes))

    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        project = copy_project(root / "project")
        empty_defs_folder(project)
        log(
            f"Project copy: {project} (sample sources removed; generated sources only)\n"
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n"
            f"Dagster shims {args.shims} ({SWITCH}={args.shims})"
        )
        # Untimed: compiles the copy's bytecode, which every later run then reads.
        check_defs(project)

        baseline = measure(project, 0, args.repeat)
        log(f"baseline (empty defs folder): {baseline.seconds:.1f} s")
        rows: list[Measurement] = []
        for sources in sizes:
            rows.append(measure(project, sources, args.repeat))
            log(f"{sources:,} sources: {rows[-1].seconds:.1f} s")

        print_table(rows, baseline, args.repeat)
        print_growth(rows, baseline)
        largest = rows[-1]
        floor = floor_project(root, largest.sources)
        # dg check yaml over the sources, less its own start-up (a project with no YAML)
        yaml_seconds = check_yaml_seconds(project) - check_yaml_seconds(floor)
        check_defs(floor)  # untimed: bytecode
        floor_seconds, _ = check_defs(floor)
        rest = largest.seconds - floor_seconds - yaml_seconds
        log(
            f"\nWhere the {largest.sources:,}-source time goes ({largest.seconds:.1f} s):\n"
            f"  dg check yaml (dg's schema check of the {largest.yaml_files:,} files, which "
            f"`dg check defs` runs before any code of the project loads): {yaml_seconds:.1f} s\n"
            f"  Dagster's floor: `dg check defs` with the same {largest.assets:,} assets and their "
            f"checks as plain Python multi-assets, no YAML, no components: {floor_seconds:.1f} s\n"
            f"  the rest, reading the YAML into components and building their definitions: "
            f"{rest:.1f} s ({rest * 1000 / largest.sources:.1f} ms/source)"
        )
        log(f"Load average at the end: {os.getloadavg()[0]:.1f}")
        log(f"\nNo network at load time ({sizes[-1]:,} sources): {check_no_network(project)}")

        if args.profile:
            profile_load(project, args.top)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
