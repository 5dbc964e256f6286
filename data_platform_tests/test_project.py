"""Adding a source is dropping a YAML file: no Python change, seen by `dg` at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from data_platform_tests.project_copy import copy_project, dg, list_defs


def dg_instance(home: Path):
    import dagster as dagster_api

    return dagster_api.DagsterInstance.from_config(str(home))


pytestmark = pytest.mark.e2e

NEW_SOURCE = """\
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers
attributes:
  name: {name}
  influx:
    url: "{{{{ env.INFLUX_URL or 'http://localhost:8086' }}}}"
    database: {name}
  measurements:
    - name: pump
  target:
    schema: "{{{{ schema_for('raw') }}}}"
  partitions:
    start: "2024-06-01"
    granularity: daily
"""


def test_dropped_yaml_files_and_scaffolded_source_appear_in_dg(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    defs_dir = project / "data_platform" / "defs"
    (defs_dir / "fleet" / "site_east").mkdir(parents=True)
    (defs_dir / "fleet" / "site_east" / "defs.yaml").write_text(NEW_SOURCE.format(name="site_east"))
    # The file name older DOP projects use loads the same way.
    (defs_dir / "legacy_site").mkdir()
    (defs_dir / "legacy_site" / "component.yaml").write_text(NEW_SOURCE.format(name="legacy_site"))

    scaffold = dg(
        project, "scaffold", "defs", "data_platform.lib.InfluxIngestComponent", "scaffolded_plant"
    )
    assert scaffold.returncode == 0, scaffold.stderr[-3000:]
    scaffolded = defs_dir / "scaffolded_plant" / "defs.yaml"
    assert "password_env" in scaffolded.read_text()

    listing = list_defs(project)
    keys = {a["asset_key"] for a in listing["assets"]}
    assert {
        "site_east/pump",
        "site_east/influx_tags",
        "legacy_site/pump",
        "scaffolded_plant/influx_hist",
        "scaffolded_plant/influx_tags",
    } <= keys
    site_east = next(a for a in listing["assets"] if a["asset_key"] == "site_east/pump")
    assert site_east["source"].endswith("fleet/site_east/defs.yaml:1")
    checks = {c["key"] for c in listing.get("asset_checks", [])}
    assert "site_east/pump:reconciliation" in checks
    # No Python file was added or changed.
    assert not [p for p in defs_dir.rglob("*.py") if p.name != "__init__.py"]


def test_dg_launch_reads_dotenv_and_fills_the_warehouse(tmp_path: Path, influxd, postgres):
    """`dg launch` of one window in a project copy whose `.env` points at real servers."""
    from datetime import UTC, datetime

    import psycopg

    from data_platform.demo.sample import PLANTS, plant_lines

    plant = PLANTS[0]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    influxd.create_database(plant.name)
    influxd.write_lines(plant.name, "\n".join(plant_lines(plant, start, start.replace(hour=2))))
    warehouse = postgres.create_database("launch_e2e")
    project = copy_project(tmp_path / "project")
    (project / ".env").write_text(
        f"WAREHOUSE_URL={warehouse}\nINFLUX_URL={influxd.url}\nDATA_PLATFORM_SANDBOX=e2e\n"
    )
    result = dg(
        project, "launch", "--assets", "plant_north/meter", "--partition", "2025-03-01-01:00"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute(
            "SELECT count(*), min(h.ts), max(h.ts) FROM raw_e2e.influx_hist h "
            "JOIN raw_e2e.influx_tag t USING (tag_id) WHERE t.measurement = 'meter'"
        ).fetchone()
    # The window 01:00-02:00 plus the source's 3 h of lateness: everything since 00:00.
    assert rows == (24, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 1, 1, 55, tzinfo=UTC))


NEW_PLANT = """\
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers
attributes:
  name: plant_east
  influx:
    url: "{{ env.INFLUX_URL or 'http://localhost:8086' }}"
    database: plant_east
  measurements:
    - name: pump
  target:
    schema: "{{ schema_for('raw') }}"
  partitions:
    start: "2025-01-01"
    granularity: hourly
"""


EAST_START = "2025-03-01"
EAST_RANGE = "2025-03-01-00:00...2025-03-01-02:00"
EAST_ASSETS = "key:plant_east/pump or key:rollups/*"


def east_plant(tmp_path: Path, influxd, postgres, name: str) -> tuple[Path, str]:
    """A copy of the project with one dropped defs.yaml (plant_east: 3 hours of a pump at one
    point a minute in its own InfluxDB database), and its warehouse; nothing else edited."""
    from datetime import UTC, datetime, timedelta

    start = datetime.fromisoformat(EAST_START).replace(tzinfo=UTC)
    influxd.create_database("plant_east")
    points = [
        f"pump,site=east flow={i * 0.25 - 3} {int((start + timedelta(minutes=i)).timestamp())}"
        for i in range(3 * 60)
    ]
    influxd.write_lines("plant_east", "\n".join(points), precision="s")
    warehouse = postgres.create_database(name)
    project = copy_project(tmp_path / "project")
    (project / "data_platform" / "defs" / "plants" / "plant_east").mkdir()
    (project / "data_platform" / "defs" / "plants" / "plant_east" / "defs.yaml").write_text(
        NEW_PLANT
    )
    (project / ".env").write_text(
        f"WAREHOUSE_URL={warehouse}\nINFLUX_URL={influxd.url}\nDATA_PLATFORM_SANDBOX=east\n"
    )
    return project, warehouse


def assert_east_rolled_up_in_one_run(project: Path, warehouse: str) -> str:
    """The 180 points rolled up hourly over the range, by one successful run; its id."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    start = datetime.fromisoformat(EAST_START).replace(tzinfo=UTC)
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute(
            "SELECT sum(r.count), min(r.bucket), max(r.bucket) FROM rollups_east.plant_1h r "
            "JOIN raw_east.influx_tag t USING (tag_id) WHERE t.source = 'plant_east'"
        ).fetchone()
    assert rows == (180, start, start + timedelta(hours=2)), rows
    # One run for the whole range of ingest and rollups.
    with dg_instance(project / ".dagster_home") as instance:
        runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success
    return runs[0].run_id


def test_a_dropped_plant_joins_the_rollups_and_a_range_launches_as_one_run(
    tmp_path: Path, influxd, postgres
):
    """One defs.yaml, nothing else edited: the sample rollups read it; one `dg launch` of a
    partition range ingests and rolls it up."""
    project, warehouse = east_plant(tmp_path, influxd, postgres, "east_e2e")
    listing = list_defs(project)
    assets = {a["asset_key"]: a for a in listing["assets"]}
    rollup_15m = assets["rollups/plant_15m"]
    assert "plant_east/pump" in rollup_15m["dependency_keys"]
    assert "plant_east/influx_tags" not in rollup_15m["dependency_keys"]
    assert "plant_north/inverter" in rollup_15m["dependency_keys"]
    assert rollup_15m["automation_condition"]["label"] == "eager"

    result = dg(project, "launch", "--assets", EAST_ASSETS, "--partition-range", EAST_RANGE)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_east_rolled_up_in_one_run(project, warehouse)


def test_just_migrate_backfills_a_range_in_one_run_with_one_planned_event_per_asset(
    tmp_path: Path, influxd, postgres
):
    """`just migrate ASSETS RANGE`, as the README's migration section runs it: one run, the
    steps in its process, one planned event per asset rather than per partition, and every
    partition of the range recorded materialized."""
    import shutil
    import sys

    import dagster as dagster_api

    just = shutil.which("just")
    assert just, "`just` is installed by `.ci/run` (PyPI rust-just)"
    project, warehouse = east_plant(tmp_path, influxd, postgres, "east_migrate")
    (project / ".dagster_home").mkdir()
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGSTER_", "DATA_PLATFORM_", "INFLUX_", "WAREHOUSE_", "VIRTUAL_ENV"))
    }
    # The copy runs on this environment: no sync, the copy's package first on the path.
    env |= {
        "UV_NO_SYNC": "1",
        "UV_PROJECT_ENVIRONMENT": str(Path(sys.executable).parents[1]),
        "PYTHONPATH": str(project),
    }
    result = subprocess.run(
        [just, "migrate", EAST_ASSETS, EAST_RANGE],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    run_id = assert_east_rolled_up_in_one_run(project, warehouse)

    hours = {f"2025-03-01-0{h}:00" for h in range(3)}
    with dg_instance(project / ".dagster_home") as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        execution = cast(dict[str, Any], run.run_config.get("execution", {}))
        assert "in_process" in execution.get("config", {})
        planned = instance.get_records_for_run(
            run_id, of_type=dagster_api.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        keys = [
            key
            for r in planned
            if (key := r.event_log_entry.get_dagster_event().asset_key) is not None
        ]
        assert len(keys) == len(planned)
        assert len(keys) == len(set(keys)), "one planned event per asset, not per partition"
        ingest = dagster_api.AssetKey(["plant_east", "pump"])
        assert ingest in keys
        assert instance.get_materialized_partitions(ingest) == hours
        for key in keys:
            if key.path[0] == "rollups":
                assert instance.get_materialized_partitions(key), key
