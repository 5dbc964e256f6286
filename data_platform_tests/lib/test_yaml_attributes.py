"""The platform's own YAML validation: a string where a list or block belongs is refused, with the
Dagster shims on and off; a template may still stand for a list."""

import pytest

from data_platform.lib.yaml_attributes import YamlShapeError
from data_platform.utils.dagster_shims.switch import SWITCH
from data_platform_tests.helpers import load_yaml_component

ROLLUPS = {
    "source": {"schema": "raw", "table": "influx_hist", "assets": ["plant/inverter"]},
    "target": {"schema": "rollups", "name_prefix": "plant"},
    "partitions": {"start": "2025-01-01", "granularity": "hourly"},
    "buckets": [{"width": "1 hour"}],
}


@pytest.fixture(params=["on", "off"], autouse=True)
def shims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SWITCH, request.param)
    return request.param


def test_a_template_may_stand_for_a_list():
    attributes = ROLLUPS | {"aggregates": "{{ ['avg', 'max'] }}"}
    with load_yaml_component(attributes, "data_platform.lib.TimescaleAggregateComponent") as (
        component,
        _defs,
    ):
        assert component.aggregates == ["avg", "max"]


@pytest.mark.parametrize(
    "aggregates, problem",
    [
        ("avg", "aggregates is the string 'avg'; it must be a list"),
        ("{{ 'avg' }}", "aggregates is a template that renders to a str; it must be a list"),
    ],
)
def test_a_string_where_a_list_belongs_is_refused(aggregates: str, problem: str):
    with (
        pytest.raises(Exception) as raised,
        load_yaml_component(
            ROLLUPS | {"aggregates": aggregates}, "data_platform.lib.TimescaleAggregateComponent"
        ),
    ):
        pass
    errors = [raised.value, raised.value.__cause__, raised.value.__context__]
    refused = [e for e in errors if isinstance(e, YamlShapeError)]
    assert refused, f"not refused by the platform: {raised.value!r}"
    assert problem in str(refused[0])
    assert "Fix: write a YAML list" in str(refused[0])
