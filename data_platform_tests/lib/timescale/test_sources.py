"""A rollup family names its inputs by rule: an asset selection or every writer of its table.

Real defs.yaml files in a sandbox defs folder; resolved at load, no server contacted.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from data_platform_tests.lib.test_time_vocabulary import error_chain, ingest, rollup, write


def deps_and_policy(defs: dg.Definitions) -> tuple[dict[str, list[str]], dict[str, Any]]:
    deps, policies = {}, {}
    for assets_def in defs.assets or []:
        assert isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.specs:
            name = spec.key.to_user_string()
            deps[name] = sorted(d.asset_key.to_user_string() for d in spec.deps)
            policies[name] = assets_def.backfill_policy
    return deps, policies


def by_rule(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = rollup([], **extra)
    body["attributes"]["source"] = {"schema": "raw", **source}
    return body


PLANTS = {
    "north": ingest("north", "2024-02-01", asset_attributes={"tags": {"site": "north"}}),
    "south": ingest("south", "2024-02-01"),
    # Same measurement names, another table: never an input of the raw.influx_hist rollups.
    "lab": ingest("lab", "2024-02-01", target={"schema": "lab_raw"}),
}


@pytest.mark.parametrize(
    ("source", "inputs"),
    [
        ({"all_writers": True}, ["north/inverter", "south/inverter"]),
        ({"select": "group:north or group:south"}, ["north/inverter", "south/inverter"]),
        ({"select": "kind:influxdb and group:north"}, ["north/inverter"]),
        ({"select": "tag:site=north"}, ["north/inverter"]),
        ({"select": "key:south/*"}, ["south/inverter"]),
        ({"assets": ["south/inverter"]}, ["south/inverter"]),
    ],
)
def test_rules_resolve_to_ingest_assets_not_registries(
    source: dict[str, Any], inputs: list[str]
) -> None:
    with create_defs_folder_sandbox() as sandbox:
        write(sandbox.defs_folder_path, {**PLANTS, "rollups": by_rule(source)})
        with sandbox.build_all_defs() as defs:
            deps, policies = deps_and_policy(defs)
            partitions = {
                s.key.to_user_string(): s.partitions_def
                for a in defs.assets or []
                if isinstance(a, dg.AssetsDefinition)
                for s in a.specs
            }
    assert deps["rollups/power_15m"] == inputs
    assert deps["rollups/power_1h"] == ["rollups/power_15m"]
    # Left out, `partitions` is the sources': one run can hold ingest and rollups.
    assert partitions["rollups/power_15m"] == partitions[inputs[0]]
    policy = policies["rollups/power_15m"]
    assert policy is not None and policy.max_partitions_per_run is None


def test_a_dropped_ingest_writing_the_table_joins_all_writers() -> None:
    with create_defs_folder_sandbox() as sandbox:
        write(sandbox.defs_folder_path, {"north": PLANTS["north"]})
        write(sandbox.defs_folder_path, {"rollups": by_rule({"all_writers": True})})
        with sandbox.build_all_defs() as defs:
            assert deps_and_policy(defs)[0]["rollups/power_15m"] == ["north/inverter"]
        write(sandbox.defs_folder_path, {"east": ingest("east", "2024-02-01")})
        with sandbox.build_all_defs() as defs:
            deps = deps_and_policy(defs)[0]["rollups/power_15m"]
    assert deps == ["east/inverter", "north/inverter"]


@pytest.mark.parametrize(
    ("source", "extra", "field", "words"),
    [
        ({"select": "group:nowhere"}, {}, "source.select", ["matches no ingest asset", "Fix:"]),
        (
            {"select": "key:*/inverter"},
            {},
            "source.select",
            ["lab/inverter writes lab_raw.influx_hist", "narrow the selection", "all_writers"],
        ),
        ({"select": "kind:"}, {}, "source.select", ["is not an asset selection"]),
        (
            {"all_writers": True},
            {},
            "source.all_writers",
            ["no ingest component of the project writes raw.elsewhere"],
        ),
        (
            {"assets": ["north/inverter"], "select": "group:north"},
            {},
            "source.select",
            ["keep one"],
        ),
        (
            {"all_writers": True},
            {"partitions": {"start": "2024-03-01", "granularity": "hourly"}},
            "partitions",
            ["must share a partitions definition", "leave `partitions` out"],
        ),
        (
            {"all_writers": True},
            {"backfill_partitions_per_run": 0},
            "backfill_partitions_per_run",
            ["not between 1 and 10000"],
        ),
    ],
)
def test_bad_rules_fail_at_load_naming_file_field_and_fix(
    source: dict[str, Any], extra: dict[str, Any], field: str, words: list[str]
) -> None:
    body = by_rule(source, **extra)
    if source.get("all_writers") and not extra:
        body["attributes"]["source"]["table"] = "elsewhere"
    with create_defs_folder_sandbox() as sandbox:
        paths = write(sandbox.defs_folder_path, {**PLANTS, "rollups": body})
        with pytest.raises(Exception) as info, sandbox.build_all_defs():
            pass
    message = error_chain(info.value)
    assert str(paths["rollups"]) in message, message
    assert field in message, message
    for word in words:
        assert word in message, message


def test_per_run_setting_fans_a_backfill_out() -> None:
    with create_defs_folder_sandbox() as sandbox:
        rollups = by_rule({"all_writers": True}, backfill_partitions_per_run=24)
        write(sandbox.defs_folder_path, {"north": PLANTS["north"], "rollups": rollups})
        with sandbox.build_all_defs() as defs:
            policy = deps_and_policy(defs)[1]["rollups/power_1h"]
    assert policy is not None and policy.max_partitions_per_run == 24


def test_all_writers_leaves_out_writers_partitioned_unlike_the_family(caplog) -> None:
    hourly = {"start": "2024-02-01", "granularity": "hourly"}
    with create_defs_folder_sandbox() as sandbox:
        paths = write(
            sandbox.defs_folder_path,
            {
                "north": PLANTS["north"],
                "daily": ingest("daily", "2024-02-01", "daily"),
                "rollups": by_rule({"all_writers": True}, partitions=hourly),
            },
        )
        with caplog.at_level("WARNING"), sandbox.build_all_defs() as defs:
            deps = deps_and_policy(defs)[0]["rollups/power_15m"]
    assert deps == ["north/inverter"]
    warning = next(r.getMessage() for r in caplog.records if "daily/inverter" in r.getMessage())
    assert str(paths["daily"]) in warning and "left out of source.all_writers" in warning
    assert "Fix: give it the same partitions" in warning
