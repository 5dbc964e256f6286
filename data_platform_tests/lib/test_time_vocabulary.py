"""Both components speak one time language, and a rollup family can take its sources' partitions.

Each test loads real defs.yaml files in a sandbox defs folder; no server is contacted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from data_platform.lib import InfluxIngestComponent, TimescaleAggregateComponent
from data_platform_tests.helpers import error_chain

INGEST = "data_platform.lib.InfluxIngestComponent"
ROLLUP = "data_platform.lib.TimescaleAggregateComponent"


def ingest(name: str, start: str, granularity: str = "hourly", **extra: Any) -> dict[str, Any]:
    return {
        "type": INGEST,
        "attributes": {
            "name": name,
            "influx": {"url": "http://127.0.0.1:8086", "database": name},
            "measurements": [{"name": "inverter"}],
            "partitions": {"start": start, "granularity": granularity},
            **extra,
        },
    }


def rollup(assets: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": ROLLUP,
        "attributes": {
            "source": {"schema": "raw", "assets": assets},
            "target": {"schema": "rollups", "name_prefix": "power"},
            "buckets": [{"width": "15m"}, {"width": "1h"}],
            **extra,
        },
    }


def write(root: Path, folders: dict[str, dict[str, Any]]) -> dict[str, Path]:
    paths = {}
    for folder, body in folders.items():
        (root / folder).mkdir(parents=True)
        paths[folder] = root / folder / "defs.yaml"
        paths[folder].write_text(yaml.safe_dump(body))
    return paths


def partitions_of(defs: dg.Definitions) -> dict[str, dg.PartitionsDefinition | None]:
    return {
        spec.key.to_user_string(): spec.partitions_def
        for assets_def in defs.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.specs
    }


def test_each_component_takes_the_others_start_and_duration_forms() -> None:
    """ISO start with offset and long durations in the ingest; short durations in the rollup."""
    plant = ingest(
        "plant",
        "2024-01-01T02:00:00+02:00",
        checks={"max_lag": "1 hour 30 minutes", "min_gap": "5 minutes"},
        target={"chunk_interval": "1 day"},
    )
    plant["attributes"]["partitions"]["lateness"] = "1 hour 30 minutes"
    rollups = rollup(
        ["plant/inverter"],
        partitions={"start": "2024-01-01", "granularity": "hourly"},
        refresh={"start_offset": "3h", "end_offset": "1m", "schedule_interval": "15m"},
        retention={"drop_after": "30d"},
        columnstore={"after": "7d"},
    )
    with create_defs_folder_sandbox() as sandbox:
        write(sandbox.defs_folder_path, {"plant": plant, "rollups": rollups})
        with sandbox.build_all_defs() as defs:
            parts = partitions_of(defs)
            ingest_def = parts["plant/inverter"]
            rollup_def = parts["rollups/power_1h"]
            assert isinstance(ingest_def, dg.TimeWindowPartitionsDefinition)
            assert isinstance(rollup_def, dg.TimeWindowPartitionsDefinition)
            assert ingest_def.start == datetime(2024, 1, 1, tzinfo=UTC)
            assert (ingest_def.start, ingest_def.cron_schedule) == (
                rollup_def.start,
                rollup_def.cron_schedule,
            )
        with sandbox.load_component_and_build_defs(
            defs_path=sandbox.defs_folder_path / "plant"
        ) as (component, _defs):
            assert isinstance(component, InfluxIngestComponent)
            plan = component.ingest_plan()
            assert plan.lateness == timedelta(minutes=90)
            assert plan.checks.max_lag == timedelta(minutes=90)
            assert plan.checks.min_gap == timedelta(minutes=5)
            assert plan.tables.chunk_interval == "1 day"
        with sandbox.load_component_and_build_defs(
            defs_path=sandbox.defs_folder_path / "rollups"
        ) as (component, _defs):
            assert isinstance(component, TimescaleAggregateComponent)
            family = component.rollup_plan()
            assert [r.width for r in family.rollups] == [timedelta(minutes=15), timedelta(hours=1)]
            refresh = family.rollups[0].refresh
            assert refresh is not None
            assert refresh.start_offset == timedelta(hours=3)
            assert refresh.schedule_interval == timedelta(minutes=15)
            assert family.rollups[0].drop_after == timedelta(days=30)
            assert family.columnstore is not None
            assert family.columnstore.after == timedelta(days=7)


def test_rollups_without_partitions_take_their_sources() -> None:
    with create_defs_folder_sandbox() as sandbox:
        write(
            sandbox.defs_folder_path,
            {
                "north": ingest("north", "2024-02-01 00:00", "15min"),
                "south": ingest("south", "2024-02-01T00:00:00Z", "15min"),
                "other": ingest("other", "2023-01-01", "daily"),
                "rollups": rollup(["north/inverter", "south/inverter"]),
            },
        )
        with sandbox.build_all_defs() as defs:
            parts = partitions_of(defs)
            assert parts["rollups/power_15m"] == parts["north/inverter"]
            assert parts["rollups/power_1h"] == parts["south/inverter"]
            assert parts["rollups/power_1h"] != parts["other/inverter"]


def test_rollups_refuse_sources_whose_partitions_differ() -> None:
    with create_defs_folder_sandbox() as sandbox:
        paths = write(
            sandbox.defs_folder_path,
            {
                "north": ingest("north", "2024-02-01", "hourly"),
                "south": ingest("south", "2024-03-01", "hourly"),
                "rollups": rollup(["north/inverter", "south/inverter"]),
            },
        )
        with pytest.raises(Exception) as info, sandbox.build_all_defs():
            pass
    message = error_chain(info.value)
    assert "ingest components writing source.assets differ" in message, message
    assert str(paths["north"]) in message and str(paths["south"]) in message
    assert "Fix: give those ingest components the same partitions" in message


def test_rollups_without_partitions_or_sources_are_refused() -> None:
    with create_defs_folder_sandbox() as sandbox:
        write(sandbox.defs_folder_path, {"rollups": rollup(["elsewhere/inverter"])})
        with pytest.raises(Exception) as info, sandbox.build_all_defs():
            pass
    assert "no ingest component of the project writes source.assets" in error_chain(info.value)
