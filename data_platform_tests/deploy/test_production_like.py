"""The production deployment on one machine: a backfill fanned out over runs, capped per server.

The processes and files are those of `deploy/`: the instance of `deploy/dagster.yaml` on a real
PostgreSQL, a `dagster api grpc` code server found through `deploy/workspace.yaml`, the daemon
(queued run coordinator, backfills, pools) and the webserver, whose GraphQL API launches the
backfill as the UI's "Materialize" dialog does. The only source is a sample YAML reading a real
influxd; the warehouse is a real PostgreSQL.

A backfill of 24 hourly partitions with `backfill_partitions_per_run: 1` must become 24
successful runs, never more than 2 ingest steps of the source's pool at once (the default pool
limit of `deploy/dagster.yaml`), and every hour in the warehouse must hold what the source holds.

Runtime: 3 to 4 minutes on 2 cores, 3 of them for the backfill. Each run is a process that
loads the code location and starts its step in a subprocess (about 9 s of CPU per run), so the
test costs about as much as 24 `dg launch` calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRun, RunsFilter
from dagster._grpc.client import DagsterGrpcClient
from psycopg.conninfo import conninfo_to_dict

from data_platform.utils.local_servers import LocalInfluxd, LocalPostgres, free_port
from data_platform_tests.project_copy import PROJECT_ROOT, copy_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEPLOY = PROJECT_ROOT / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "data_platform"

SOURCE = "line_a"
POOL = "influx_test"
POOL_LIMIT = 2
ASSET_KEY = dg.AssetKey([SOURCE, "pump"])
INGEST_STEP = f"{SOURCE}_ingest"
DAY = datetime(2024, 3, 1, tzinfo=UTC)
HOURS = 24
SERIES = (("north", "p1"), ("south", "p2"))
FIELDS_PER_POINT = 2

STARTUP_TIMEOUT_S = 120
BACKFILL_TIMEOUT_S = 15 * 60
POLL_INTERVAL_S = 0.5

SOURCE_YAML = """\
# One InfluxDB server with its own pool; a backfill runs one partition per run.
type: data_platform.lib.InfluxIngestComponent
attributes:
  name: {name}
  influx:
    url: {url}
    database: {database}
    pool: {pool}
  measurements:
    - name: pump
  target:
    schema: raw
  partitions:
    start: "{start}"
    granularity: hourly
  automation:
    ingest: none
    registry_cron: null
  backfill_partitions_per_run: 1
"""

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

LOCATION_STATUS = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename } }
    }
  }
}
"""


def partition_key(hour: int) -> str:
    return (DAY + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def pump_lines() -> tuple[str, dict[datetime, int]]:
    """Line protocol for 24 hours, a different number of points each hour; values per hour."""
    lines = []
    expected: dict[datetime, int] = {}
    for hour in range(HOURS):
        start = DAY + timedelta(hours=hour)
        points = 20 + 3 * hour
        for i in range(points):
            ts_ns = int(start.timestamp()) * 10**9 + i * (3600 * 10**9 // points)
            running = "true" if i % 3 else "false"
            for site, unit in SERIES:
                lines.append(
                    f"pump,site={site},unit={unit} flow={i + 0.5},running={running} {ts_ns}"
                )
        expected[start] = points * len(SERIES) * FIELDS_PER_POINT
    return "\n".join(lines) + "\n", expected


def project_with_one_source(dest: Path, influxd: LocalInfluxd, database: str) -> Path:
    """A copy of the project whose defs folder holds only the sample source."""
    project = copy_project(dest)
    defs = project / "data_platform" / "defs"
    for entry in defs.iterdir():
        if entry.is_dir():
            for path in sorted(entry.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            entry.rmdir()
    (defs / SOURCE).mkdir()
    (defs / SOURCE / "defs.yaml").write_text(
        SOURCE_YAML.format(
            name=SOURCE,
            url=influxd.url,
            database=database,
            pool=POOL,
            start=DAY.strftime("%Y-%m-%d"),
        )
    )
    return project


def dagster_home(home: Path, postgres: LocalPostgres) -> dict[str, str]:
    """DAGSTER_HOME with deploy/dagster.yaml; returns the variables its storage reads.

    Dagster gets a database of its own on the PostgreSQL server. The embedded server listens on
    a Unix socket only, which libpq takes as a `host` parameter of the URL.
    """
    url = postgres.create_database(f"dagster_{uuid.uuid4().hex[:10]}")
    conninfo = conninfo_to_dict(url)
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_db"]["params"] = {"host": conninfo["host"]}
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": str(conninfo.get("user", "postgres")),
        "DAGSTER_PG_PASSWORD": str(conninfo.get("password", "")),
        "DAGSTER_PG_HOST": "localhost",
        "DAGSTER_PG_DB": str(conninfo["dbname"]),
        "DAGSTER_PG_PORT": str(conninfo.get("port", "5432")),
    }


@dataclass
class Service:
    """A long-running process of the deployment, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        last = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} (exit code {self.process.poll()}) ---\n{last}"

    def stop(self, timeout: float = 30.0) -> None:
        """Ask for a clean shutdown; kill the process group if it does not come."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@dataclass
class Deployment:
    """Code server, daemon and webserver of one DAGSTER_HOME, stopped together."""

    project: Path
    env: Mapping[str, str]
    logs: Path
    stack: ExitStack
    services: list[Service] = field(default_factory=list)
    web_url: str = ""

    def start(self, name: str, args: list[str]) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                cwd=self.project,
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = Service(name, process, log)
        self.stack.callback(running.stop)
        self.services.append(running)
        return running

    def check_alive(self, during: str) -> None:
        for svc in self.services:
            if svc.process.poll() is not None:
                pytest.fail(f"{svc.name} exited {during}\n{self.tails()}")

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive(f"while waiting for {what}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout:.0f}s\n{self.tails()}")
            time.sleep(0.5)

    def tails(self) -> str:
        return "\n".join(s.tail() for s in self.services)


@contextmanager
def deployment(project: Path, env: Mapping[str, str], logs: Path) -> Iterator[Deployment]:
    """Start the processes of deploy/: they are stopped on exit, whatever happened."""
    code_port, web_port = int(env["DAGSTER_CODE_SERVER_PORT"]), free_port()
    workspace = str(DEPLOY / "workspace.yaml")
    with ExitStack() as stack:
        running = Deployment(project, env, logs, stack)
        running.start(
            "code-server",
            [
                str(BIN / "dagster"),
                "api",
                "grpc",
                "--module-name",
                "data_platform.definitions",
                "--working-directory",
                str(project),
                "--location-name",
                LOCATION,
                "--host",
                "127.0.0.1",
                "--port",
                str(code_port),
            ],
        )
        running.wait_for("code server", lambda: code_server_up(code_port), STARTUP_TIMEOUT_S)
        running.start("daemon", [str(BIN / "dagster-daemon"), "run", "--workspace", workspace])
        running.start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "--host",
                "127.0.0.1",
                "--port",
                str(web_port),
                "--workspace",
                workspace,
            ],
        )
        running.web_url = f"http://127.0.0.1:{web_port}"
        running.wait_for(
            "code location in the webserver", lambda: location_loaded(running.web_url), 60
        )
        yield running


def code_server_up(port: int) -> bool:
    try:
        DagsterGrpcClient(port=port, host="127.0.0.1").ping("ready")
    except Exception:
        return False
    return True


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"errors": response.text}
    if response.status_code != 200 or body.get("errors"):
        pytest.fail(f"GraphQL request failed ({response.status_code}): {body}")
    return body["data"]


def location_loaded(url: str) -> bool:
    try:
        response = httpx.post(f"{url}/graphql", json={"query": LOCATION_STATUS}, timeout=10)
        entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    return any(
        e["name"] == LOCATION
        and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def launch_backfill(web_url: str, partition_keys: list[str]) -> str:
    result = graphql(
        web_url,
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": list(ASSET_KEY.path)}],
                "partitionNames": partition_keys,
                "fromFailure": False,
                "title": "production-like backfill",
            }
        },
    )["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        pytest.fail(f"backfill not launched: {result}")
    return result["backfillId"]


def run_partitions(run: DagsterRun) -> tuple[str, str]:
    """First and last partition of a run, whether tagged as one partition or as a range."""
    single = run.tags.get("dagster/partition")
    if single is not None:
        return single, single
    return run.tags["dagster/asset_partition_range_start"], run.tags[
        "dagster/asset_partition_range_end"
    ]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one moment; one ending as another starts does not count."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in moments:
        open_now += change
        peak = max(peak, open_now)
    return peak


def ingest_intervals(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[float, float]]:
    """STEP_START to STEP_SUCCESS/FAILURE of the ingest step, one interval per run.

    They show steps of different runs running side by side; the pool's limit itself is
    judged on the instance's slot claims.
    """
    intervals = []
    for run_id in run_ids:
        started = ended = None
        for entry in instance.all_logs(
            run_id,
            of_type={
                DagsterEventType.STEP_START,
                DagsterEventType.STEP_SUCCESS,
                DagsterEventType.STEP_FAILURE,
            },
        ):
            if entry.step_key != INGEST_STEP or entry.dagster_event is None:
                continue
            if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                started = entry.timestamp
            else:
                ended = entry.timestamp
        assert started is not None and ended is not None, f"run {run_id}: no ingest step"
        intervals.append((started, ended))
    return intervals


def warehouse_counts(warehouse_url: str) -> dict[datetime, int]:
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "SELECT date_trunc('hour', ts, 'UTC'), count(*) FROM raw.influx_hist GROUP BY 1"
        ).fetchall()
    return {hour.astimezone(UTC): count for hour, count in rows}


def test_backfill_fans_out_over_runs_within_the_pool_limit(
    tmp_path: Path,
    influxd: LocalInfluxd,
    influx_db: str,
    postgres: LocalPostgres,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
):
    started = time.monotonic()
    lines, expected = pump_lines()
    influxd.write_lines(influx_db, lines)
    project = project_with_one_source(tmp_path / "project", influxd, influx_db)
    storage_env = dagster_home(tmp_path / "dagster_home", postgres)
    deployment_env = {
        **storage_env,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(free_port()),
    }
    for name, value in deployment_env.items():
        monkeypatch.setenv(name, value)
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DAGSTER_CLOUD_", "DATA_PLATFORM_", "INFLUX_", "WAREHOUSE_"))
        },
        **deployment_env,
        "PYTHONPATH": str(project),
        "WAREHOUSE_URL": warehouse_url,
    }

    # Opening the instance creates Dagster's tables once, as `dagster instance migrate` does
    # before a deployment starts, instead of four processes racing to create them.
    home = storage_env["DAGSTER_HOME"]
    with (
        dg.DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance,
        deployment(project, env, tmp_path / "logs") as running,
    ):
        assert instance.global_op_concurrency_default_limit == POOL_LIMIT
        ready = time.monotonic()
        keys = [partition_key(h) for h in range(HOURS)]
        backfill_id = launch_backfill(running.web_url, keys)
        submitted = time.monotonic()

        # Poll the instance as the UI does, watching the pool while runs come and go.
        claimed_peak = waiting_peak = 0
        runs_filter = RunsFilter(tags={"dagster/backfill": backfill_id})
        while True:
            pool = instance.event_log_storage.get_concurrency_info(POOL)
            claimed_peak = max(claimed_peak, pool.active_slot_count)
            waiting_peak = max(waiting_peak, pool.pending_step_count)
            backfill = instance.get_backfill(backfill_id)
            assert backfill is not None
            runs = instance.get_runs(filters=runs_filter)
            if backfill.status in BULK_ACTION_TERMINAL_STATUSES and all(
                r.status in FINISHED_STATUSES for r in runs
            ):
                break
            running.check_alive("during the backfill")
            if time.monotonic() - submitted > BACKFILL_TIMEOUT_S:
                statuses = Counter(r.status.value for r in runs)
                pytest.fail(
                    f"backfill {backfill_id} not done after {BACKFILL_TIMEOUT_S}s: "
                    f"{backfill.status.value}, runs {dict(statuses)}\n{running.tails()}"
                )
            time.sleep(POLL_INTERVAL_S)
        finished = time.monotonic()

        statuses = Counter(r.status.value for r in runs)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, dict(statuses)
        assert statuses == {"SUCCESS": HOURS}
        assert sorted(run_partitions(r) for r in runs) == [(k, k) for k in keys]
        assert instance.get_materialized_partitions(ASSET_KEY) == set(keys)

        # The pool got its limit from the instance default, was used to it, and held it.
        pool = instance.event_log_storage.get_concurrency_info(POOL)
        assert pool.slot_count == POOL_LIMIT
        assert pool.active_slot_count == 0, "every slot was freed"
        # The limit is judged on the slots the instance hands out (polled above). The steps'
        # STEP_START/STEP_SUCCESS timestamps only show that runs ran side by side: on a
        # heavily loaded machine they once showed 3 steps at once while the claims polled
        # from the instance never passed the limit.
        overlap = max_overlap(ingest_intervals(instance, [r.run_id for r in runs]))
        assert claimed_peak <= POOL_LIMIT, f"{claimed_peak} slots of pool {POOL} claimed at once"
        assert max(overlap, claimed_peak) >= POOL_LIMIT, "the runs never ran side by side"

    # Every window holds exactly what the source holds.
    assert warehouse_counts(warehouse_url) == expected

    measured = {
        "startup_s": round(ready - started, 1),
        "backfill_s": round(finished - submitted, 1),
        "total_s": round(time.monotonic() - started, 1),
        "max_concurrent_ingest_steps": overlap,
        "max_claimed_slots_seen": claimed_peak,
        "max_steps_waiting_for_a_slot_seen": waiting_peak,
    }
    for name, value in measured.items():
        record_property(name, value)
    print(f"\nbackfill of {HOURS} partitions, one run each: {measured}")
