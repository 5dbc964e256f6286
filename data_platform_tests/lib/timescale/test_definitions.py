"""What a reader reviews as a whole: the generated DDL and the asset graph of a typical YAML."""

from __future__ import annotations

import dagster as dg
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from syrupy.assertion import SnapshotAssertion

from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.timescale import sql as q
from data_platform.lib.warehouse import WarehouseResource

TYPICAL_YAML = """
type: data_platform.lib.timescale.TimescaleAggregateComponent
attributes:
  source:
    schema: plant_a
    assets: [plant_a/influx/power]
  target:
    schema: plant_a_rollups
    name_prefix: plant_a_power
  partitions:
    start: "2024-01-01"
    granularity: hourly
  buckets:
    - width: 1 minute
    - width: 15m
    - width: 1 hour
      refresh: {start_offset: 1 day, end_offset: 1 hour, schedule_interval: 1 hour}
    - width: 1 day
      refresh: {start_offset: 3 days, end_offset: 1 day, schedule_interval: 1 day}
  aggregates: [avg, min, max, first, last]
  materialized_only: false
  refresh: {start_offset: 3 hours, end_offset: 1 minute, schedule_interval: 15 minutes}
  columnstore: {after: 7 days}
  retention: {drop_after: 365 days, raw_drop_after: 30 days}
  translation:
    key_prefix: warehouse
    group_name: plant_a_rollups
"""


def _typical() -> TimescaleAggregateComponent:
    attributes = yaml.safe_load(TYPICAL_YAML)["attributes"]
    return TimescaleAggregateComponent.resolve_from_dict(attributes)


def test_timescaledb_ddl(snapshot: SnapshotAssertion) -> None:
    assert q.creation_script("timescaledb", _typical().rollup_plan()) == snapshot


def test_postgresql_ddl(snapshot: SnapshotAssertion) -> None:
    assert q.creation_script("postgresql", _typical().rollup_plan()) == snapshot


# Never connected to: definitions load without a server.
UNREACHABLE = WarehouseResource(url="postgresql://nobody@127.0.0.1:1/none")


def _graph(defs: dg.Definitions) -> list[dict[str, object]]:
    graph = dg.Definitions.merge(
        defs, dg.Definitions(resources={"warehouse": UNREACHABLE})
    ).resolve_asset_graph()
    out = []
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        out.append(
            {
                "key": key.to_user_string(),
                "deps": sorted(k.to_user_string() for k in node.parent_keys),
                "group": node.group_name,
                "kinds": sorted(node.kinds),
                "partitions": str(node.partitions_def),
                "automation": node.automation_condition.get_label()
                if node.automation_condition
                else None,
                "checks": sorted(k.name for k in node.check_keys),
            }
        )
    return out


def test_asset_graph_from_yaml(snapshot: SnapshotAssertion) -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=TimescaleAggregateComponent,
            defs_yaml_contents=yaml.safe_load(TYPICAL_YAML),
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, TimescaleAggregateComponent)
            assert _graph(defs) == snapshot


def test_scaffolded_yaml_loads_as_written() -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=TimescaleAggregateComponent)
        text = (path / "defs.yaml").read_text()
        assert text.startswith("# Rollups of a raw time-series table")
        assert "# columnstore:" in text and "on_definition_change: fail" in text
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, TimescaleAggregateComponent)
            keys = {entry["key"] for entry in _graph(defs)}
            assert keys == {"rollups/rollup_1m", "rollups/rollup_1h", "rollups/rollup_1d"}


def test_translation_templates_see_the_rollup() -> None:
    attributes = yaml.safe_load(TYPICAL_YAML)["attributes"]
    attributes["translation"] = {
        "key": "warehouse/{{ rollup.suffix }}/{{ rollup.name }}",
        "owners": ["team:process"],
        "tags": {"bucket": "{{ rollup.suffix }}"},
        "automation_condition": "{{ dg.AutomationCondition.on_cron('0 * * * *') }}",
    }
    component = TimescaleAggregateComponent.resolve_from_dict(attributes)
    specs = {r.name: component.get_asset_spec(r) for r in component.rollup_plan().rollups}
    hourly = specs["plant_a_power_1h"]
    assert hourly.key == dg.AssetKey(["warehouse", "1h", "plant_a_power_1h"])
    assert [d.asset_key for d in hourly.deps] == [
        dg.AssetKey(["warehouse", "15m", "plant_a_power_15m"])
    ]
    assert hourly.owners == ["team:process"]
    assert hourly.tags["bucket"] == "1h"
    assert hourly.automation_condition is not None
    assert hourly.automation_condition.get_label() != "eager"
