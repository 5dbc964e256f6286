"""Adding a source is dropping a YAML file: no Python change, seen by `dg` at once."""

from __future__ import annotations

from pathlib import Path

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


def test_a_dropped_plant_joins_the_rollups_and_a_range_launches_as_one_run(
    tmp_path: Path, influxd, postgres
):
    """One defs.yaml, nothing else edited: the sample rollups read it; one `dg launch` of a
    partition range ingests and rolls it up."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    start = datetime(2025, 3, 1, tzinfo=UTC)
    influxd.create_database("plant_east")
    points = [
        f"pump,site=east flow={i * 0.25 - 3} {int((start + timedelta(minutes=i)).timestamp())}"
        for i in range(3 * 60)
    ]
    influxd.write_lines("plant_east", "\n".join(points), precision="s")
    warehouse = postgres.create_database("east_e2e")
    project = copy_project(tmp_path / "project")
    (project / "data_platform" / "defs" / "plants" / "plant_east").mkdir()
    (project / "data_platform" / "defs" / "plants" / "plant_east" / "defs.yaml").write_text(
        NEW_PLANT
    )
    listing = list_defs(project)
    assets = {a["asset_key"]: a for a in listing["assets"]}
    rollup_15m = assets["rollups/plant_15m"]
    assert "plant_east/pump" in rollup_15m["dependency_keys"]
    assert "plant_east/influx_tags" not in rollup_15m["dependency_keys"]
    assert "plant_north/inverter" in rollup_15m["dependency_keys"]
    assert rollup_15m["automation_condition"]["label"] == "eager"

    (project / ".env").write_text(
        f"WAREHOUSE_URL={warehouse}\nINFLUX_URL={influxd.url}\nDATA_PLATFORM_SANDBOX=east\n"
    )
    result = dg(
        project,
        "launch",
        "--assets",
        "key:plant_east/pump or key:rollups/*",
        "--partition-range",
        "2025-03-01-00:00...2025-03-01-02:00",
    )
    assert result.returncode == 0, result.stderr[-4000:]
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
