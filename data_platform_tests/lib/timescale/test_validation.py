"""Load-time validation: every bad setting names its YAML field, the problem and the fix.

None of these tests starts a server: definitions must load without a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster.components.testing import create_defs_folder_sandbox

from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.timescale.plan import RollupConfigError

BASE: dict[str, Any] = {
    "source": {"schema": "raw", "assets": ["plant_a/influx/power"]},
    "target": {"schema": "rollups", "name_prefix": "power"},
    "partitions": {"start": "2024-01-01", "granularity": "hourly"},
    "buckets": [{"width": "1 minute"}, {"width": "1 hour"}],
}


def attributes(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def load_error(attrs: dict[str, Any]) -> str:
    with pytest.raises((RollupConfigError, ValueError)) as info:
        TimescaleAggregateComponent.resolve_from_dict(attrs).rollup_plan()
    return str(info.value)


CASES = [
    pytest.param(
        attributes(buckets=[{"width": "1 minute"}, {"width": "90 seconds"}]),
        [
            "buckets[1].width",
            "not a multiple of any narrower bucket",
            "Fix: make it a multiple of 1 minute",
        ],
        id="width-not-a-multiple",
    ),
    pytest.param(
        attributes(buckets=[{"width": "2 minutes"}, {"width": "3 minutes"}, {"width": "1 hour"}]),
        ["buckets[1].width", "3 minutes is not a multiple", "2 minutes"],
        id="widths-not-multiples-of-each-other",
    ),
    pytest.param(
        attributes(
            buckets=[{"width": "1 minute"}, {"width": "1 day"}],
            refresh={
                "start_offset": "3 hours",
                "end_offset": "1 minute",
                "schedule_interval": "30 minutes",
            },
        ),
        [
            "refresh.start_offset",
            "less than two 1 day buckets",
            "at least 2 days 1 minute",
            "buckets[1].refresh",
        ],
        id="refresh-window-too-small",
    ),
    pytest.param(
        attributes(
            buckets=[
                {"width": "1 minute"},
                {
                    "width": "1 hour",
                    "refresh": {
                        "start_offset": "2 hours",
                        "end_offset": "1 hour",
                        "schedule_interval": "1 hour",
                    },
                },
            ],
        ),
        ["buckets[1].refresh.start_offset", "at least 3 hours"],
        id="bucket-refresh-window-too-small",
    ),
    pytest.param(
        attributes(
            refresh={
                "start_offset": "3 days",
                "end_offset": "1 hour",
                "schedule_interval": "1 hour",
            },
            retention={"raw_drop_after": "1 day"},
        ),
        [
            "retention.raw_drop_after",
            "keeps 1 day",
            "refreshes the last 3 days",
            "Fix: keep the input at least 3 days",
        ],
        id="raw-retention-shorter-than-refresh",
    ),
    pytest.param(
        attributes(
            buckets=[
                {"width": "1 minute", "drop_after": "1 day"},
                {
                    "width": "1 hour",
                    "refresh": {
                        "start_offset": "7 days",
                        "end_offset": "1 hour",
                        "schedule_interval": "1 hour",
                    },
                },
            ],
            refresh={
                "start_offset": "3 hours",
                "end_offset": "1 minute",
                "schedule_interval": "5 minutes",
            },
        ),
        ["buckets[0].drop_after", "power_1m keeps 1 day", "power_1h", "7 days"],
        id="base-retention-shorter-than-wider-refresh",
    ),
    pytest.param(
        attributes(
            refresh={
                "start_offset": "3 days",
                "end_offset": "1 hour",
                "schedule_interval": "1 hour",
            },
            retention={"drop_after": "1 day"},
        ),
        ["retention.drop_after", "make drop_after at least the refresh start_offset"],
        id="rollup-retention-inside-refresh-window",
    ),
    pytest.param(
        attributes(aggregates=["avg", "median"]),
        ["aggregates[1]", "unknown aggregate 'median'", "avg, min, max, count, sum, first, last"],
        id="unknown-aggregate",
    ),
    pytest.param(
        attributes(buckets=[{"width": "1 fortnight"}]),
        ["buckets[0].width", "unknown unit 'fortnight'", "'1 minute', '5 minutes'"],
        id="bad-interval-text",
    ),
    pytest.param(
        attributes(buckets=[{"width": "1 month"}]),
        ["buckets[0].width", "calendar months", "days or weeks"],
        id="calendar-interval",
    ),
    pytest.param(
        attributes(partitions={"start": "2024-01-01", "granularity": "weekly"}),
        [
            "partitions.granularity",
            "'weekly' is not one of 15min, hourly, daily",
            "ingest component",
        ],
        id="granularity-not-allowed",
    ),
    pytest.param(
        attributes(partitions={"start": "2024-01-01T00:30:00", "granularity": "hourly"}),
        ["partitions.start", "does not start a hourly partition", "boundary"],
        id="start-off-boundary",
    ),
    pytest.param(
        attributes(partitions={"start": "first of january", "granularity": "daily"}),
        ["partitions.start", "not an ISO date", "ingest component"],
        id="start-not-iso",
    ),
    pytest.param(
        attributes(buckets=[{"width": "1 minute"}, {"width": "60 seconds"}]),
        ["buckets[1].width", "repeats buckets[0]"],
        id="duplicate-width",
    ),
    pytest.param(
        attributes(columnstore={"after": "30 days", "orderby": "ts DESC"}),
        ["columnstore.orderby", "bucket DESC"],
        id="columnstore-unknown-column",
    ),
    pytest.param(
        attributes(target={"schema": "rollups", "name_prefix": "p" * 62}),
        ["target.name_prefix", "63-byte identifier limit", "shorter name"],
        id="name-too-long",
    ),
]


@pytest.mark.parametrize(("attrs", "expected"), CASES)
def test_invalid_settings_name_field_and_fix(attrs: dict[str, Any], expected: list[str]) -> None:
    message = load_error(attrs)
    for part in expected:
        assert part in message, message


def test_valid_family_plans_hierarchy_without_a_database() -> None:
    comp = TimescaleAggregateComponent.resolve_from_dict(
        attributes(
            buckets=[
                {"width": "1d"},
                {"width": "1 minute"},
                {"width": "5 minutes"},
                {"width": "15m"},
                {"width": "1 hour", "name": "hourly"},
                {"width": "7 hours"},
            ],
            aggregates=["avg", "max"],
        )
    )
    plan = comp.rollup_plan()
    bases = {r.name: r.base.name if r.base else None for r in plan.rollups}
    assert bases == {
        "power_1m": None,
        "power_5m": "power_1m",
        "power_15m": "power_5m",
        "power_hourly": "power_15m",
        "power_7h": "power_hourly",
        "power_1d": "power_hourly",
    }
    assert plan.rollups[0].columns == ("avg", "max", "count", "sum")


def _sandbox_error(attrs: dict[str, Any]) -> tuple[str, Path]:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            component_cls=TimescaleAggregateComponent,
            defs_yaml_contents={
                "type": "data_platform.lib.timescale.TimescaleAggregateComponent",
                "attributes": attrs,
            },
        )
        # Dagster wraps the component's error; its message is in the chain of causes.
        with (
            pytest.raises(Exception) as info,
            sandbox.load_component_and_build_defs(defs_path=path),
        ):
            pass
        chain, error = [], info.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__
        return "\n".join(chain), path / "defs.yaml"


def test_yaml_errors_point_at_file_line_and_field() -> None:
    message, defs_yaml = _sandbox_error(
        attributes(buckets=[{"width": "1 minute"}, {"width": "1 hour"}, {"width": "150 seconds"}])
    )
    assert f"{defs_yaml}:" in message
    assert "attributes.buckets.2.width" in message
    assert "2 minutes 30 seconds" in message and "Fix: make it a multiple of 1 minute" in message


def test_yaml_type_errors_point_at_file_and_field() -> None:
    message, defs_yaml = _sandbox_error(attributes(materialized_only="sometimes"))
    assert f"{defs_yaml}:" in message
    assert "attributes.materialized_only" in message and "boolean" in message
