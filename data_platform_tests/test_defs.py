"""The project's definitions: they load with nothing set and no server, and the asset graph is
reviewed as a snapshot (`just snapshot-update` regenerates it). Every test runs with the Dagster
shims on and off: both compare with the one snapshot."""

from __future__ import annotations

import socket
from typing import Any

import dagster as dg
import pytest
from syrupy.extensions.amber import AmberSnapshotExtension
from syrupy.location import PyTestLocation
from syrupy.types import SnapshotIndex

from data_platform.definitions import defs as project_defs
from data_platform.utils.dagster_shims.switch import SWITCH


@pytest.fixture(params=["on", "off"], autouse=True)
def shims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SWITCH, request.param)
    return request.param


def load_project_defs() -> dg.Definitions:
    return project_defs()  # type: ignore[call-arg]


def describe_partitions(partitions_def: dg.PartitionsDefinition | None) -> Any:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return {
            "type": "time_window",
            "cron": partitions_def.cron_schedule,
            "start": partitions_def.start.isoformat(),
            "fmt": partitions_def.fmt,
            "timezone": partitions_def.timezone,
            "end_offset": partitions_def.end_offset,
        }
    return type(partitions_def).__name__


def asset_graph_summary(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    summary: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        summary[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": describe_partitions(node.partitions_def),
            "automation": condition.get_label() if condition else None,
            "backfill_policy": str(node.backfill_policy.policy_type)
            if node.backfill_policy
            else None,
            "checks": sorted(c.name for c in node.check_keys),
            "freshness": type(node.freshness_policy).__name__ if node.freshness_policy else None,
        }
    return summary


class OneSnapshotForBothSettings(AmberSnapshotExtension):
    """`test_asset_graph_snapshot[on]` and `[off]` compare with the same stored graph."""

    @classmethod
    def get_snapshot_name(cls, *, test_location: PyTestLocation, index: SnapshotIndex = 0) -> str:
        name = super().get_snapshot_name(test_location=test_location, index=index)
        return name.split("[", 1)[0]


def test_asset_graph_snapshot(snapshot):
    assert asset_graph_summary(load_project_defs()) == snapshot.use_extension(
        OneSnapshotForBothSettings
    )


def test_definitions_load_without_secrets_or_network(monkeypatch):
    for name in (
        "WAREHOUSE_URL",
        "INFLUX_URL",
        "INFLUX_PASSWORD",
        "INFLUX_TOKEN",
        "SLACK_BOT_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("loading definitions must not open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    defs = load_project_defs()
    graph = defs.resolve_asset_graph()
    assert graph.get_all_asset_keys()
    # The warehouse URL is an EnvVar resolved when a run starts, not now.
    assert "warehouse" in (defs.resources or {})


def test_every_asset_has_a_code_reference_and_freshness():
    graph = load_project_defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        refs = node.metadata.get("dagster/code_references")
        assert refs is not None and refs.code_references, key
        assert node.freshness_policy is not None, key
