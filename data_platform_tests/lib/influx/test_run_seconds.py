"""A materialization says where its time went: each step of its windows, then the checks."""

from __future__ import annotations

import dagster as dg
import pytest

from data_platform.lib.historian.window import WRITE_STEPS
from data_platform_tests.helpers import load_yaml_component, materializations, run_assets
from data_platform_tests.lib.influx.test_ingest_component import attrs, plant_lines

pytestmark = pytest.mark.integration


def test_materialization_reports_seconds_per_step(influxd, influx_db, warehouse_url):
    influxd.write_lines(influx_db, "\n".join(plant_lines()))
    key = dg.AssetKey(["plant", "inverter"])
    with load_yaml_component(attrs(influxd, influx_db)) as (_component, defs):
        result = run_assets(
            defs,
            warehouse_url,
            partition_key="2024-03-01-00:00",
            selection=[key],
        )
    assert result.success
    seconds = materializations(result)[key]["seconds"]
    assert list(seconds) == [*WRITE_STEPS, "checks", "checks_source_wait"]
    assert all(v >= 0 for v in seconds.values())
    # The window read, checked, encoded and copied rows; the checks asked the source again.
    for step in ("read", "check", "encode", "copy", "checks"):
        assert seconds[step] > 0, step
    step_s = next(
        e.event_specific_data.duration_ms / 1000  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    )
    # The wait for the source's counts (asked beside the windows) is part of the checks.
    assert 0 <= seconds["checks_source_wait"] <= seconds["checks"]
    assert sum(v for k, v in seconds.items() if k != "checks_source_wait") <= step_s
