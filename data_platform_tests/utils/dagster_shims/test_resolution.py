"""With the shims on, YAML attributes resolve with cached templates exactly as Dagster resolves them."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.resolved import base as resolved_base
from dagster.components.resolved.context import ResolutionContext
from dagster.components.resolved.errors import ResolutionException
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox
from dagster_shared.yaml_utils import parse_yaml_with_source_position
from jinja2.nativetypes import NativeTemplate

from data_platform.utils.dagster_shims import resolution
from data_platform.utils.dagster_shims.resolution import (
    CachedTemplateResolutionContext,
    compiled_template,
    render_plain_text,
)
from data_platform.utils.dagster_shims.switch import SWITCH
from data_platform_tests.helpers import describe_definitions

# Strings without Jinja syntax: Jinja still turns some into other types, trims a newline, ...
PLAIN_TEXT = [
    "inverter", "15 minutes", "2025-01-01", "123", "-3", "1.5", "1e3", "0x10", "1_000", "True",
    "None", "[1, 2]", "(1,)", "'quoted'", '"quoted"', " 5", "5 ", "  ", "\t1", "a\n", "a\n\n",
    "\n", "\r\n", "a\r\nb", "a\rb\r", "[1,\n2]", "None\n", "#x", "%x", "}}", "a#}b", "inf",
    "nan", "b'x'", "x: y", "a;b -- c", "é 漢字", "\x00",
]  # fmt: skip


@pytest.mark.parametrize("text", PLAIN_TEXT)
def test_plain_text_renders_as_jinja_renders_it(text: str):
    expected = NativeTemplate(text).render()
    rendered = render_plain_text(text)
    assert rendered == expected
    assert type(rendered) is type(expected)


def contexts(**scope: Any) -> tuple[ResolutionContext, CachedTemplateResolutionContext]:
    theirs = ResolutionContext.default().with_scope(**scope)
    ours = CachedTemplateResolutionContext(scope=theirs.scope)
    return theirs, ours


ATTRIBUTES = {
    "name": "plant_north",
    "url": "{{ env.DATA_PLATFORM_TEST_URL or 'http://localhost:8086' }}",
    "schema": "{{ schema_for('raw') }}",
    "count": "{{ 1 + 2 }}",
    "list": "{{ [1, 2] }}",
    "mixed": "prefix-{{ 'x' }}-suffix",
    "numbers": [1, 2.5, True, None],
    "nested": {"a": ["{{ 'b' }}", "c", "12"], "empty": ""},
}


def test_nested_attributes_resolve_the_same(monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_TEST_URL", "http://influx:8086")
    theirs, ours = contexts(schema_for=lambda layer: f"{layer}_dev")
    assert ours.resolve_value(ATTRIBUTES) == theirs.resolve_value(ATTRIBUTES)
    assert ours.resolve_value(ATTRIBUTES)["url"] == "http://influx:8086"
    assert ours.resolve_value(ATTRIBUTES)["count"] == 3


def test_each_templated_string_compiles_once():
    compiled_template.cache_clear()
    _, ours = contexts(schema_for=lambda layer: layer)
    for _ in range(50):
        ours.resolve_value({"a": "{{ schema_for('raw') }}", "b": "plain"})
    info = compiled_template.cache_info()
    assert (info.misses, info.hits) == (1, 49)


def test_scope_is_read_at_every_render(monkeypatch):
    _, ours = contexts()
    monkeypatch.setenv("DATA_PLATFORM_TEST_URL", "first")
    assert ours.resolve_value("{{ env.DATA_PLATFORM_TEST_URL }}") == "first"
    monkeypatch.setenv("DATA_PLATFORM_TEST_URL", "second")
    assert ours.resolve_value("{{ env.DATA_PLATFORM_TEST_URL }}") == "second"


@pytest.mark.parametrize(
    "template",
    ["{{ unknown_helper('raw') }}", "{{ schema_for() }}", "{{ 1 / 0 }}", "{{ unclosed"],
    ids=["undefined", "helper raises", "template raises", "syntax error"],
)
def test_errors_are_dagsters_own(template: str, tmp_path):
    path = tmp_path / "defs.yaml"
    path.write_text(f'attributes:\n  schema: "{template}"\n')
    tree = parse_yaml_with_source_position(path.read_text(), str(path))
    theirs, ours = contexts(schema_for=lambda layer: layer)
    messages = []
    for context in (theirs, ours):
        located = context.with_source_position_tree(tree.source_position_tree)
        with pytest.raises(Exception) as raised:
            located.at_path("attributes").at_path("schema").resolve_value(template)
        messages.append((type(raised.value), str(raised.value)))
    assert messages[0] == messages[1]
    if template != "{{ unclosed":
        assert messages[1][0] is ResolutionException
        assert "defs.yaml:2" in messages[1][1]


# -- the cached resolution builds what Dagster's builds ------------------------------------------

PROJECT_DEFS = Path(__file__).resolve().parents[3] / "data_platform" / "defs"

RICH_INGEST = """\
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers
attributes:
  name: rich
  source: "{{ 'influx' if env.INFLUX_URL else 'files' }}"
  influx: {url: "{{ env.INFLUX_URL or 'http://localhost:8086' }}", database: rich}
  files: {paths: [".data/rich.lp.gz"]}
  measurements:
    - {name: inverter, fields: [p_ac, temp], tags: {site: [north, south]}}
    - {name: "weather station", asset_name: weather}
  target: {schema: "{{ schema_for('raw') }}"}
  partitions: {start: "2025-01-01", granularity: daily, lateness: 2h}
  signal_name: "{{ tags.site }}.{{ field }}"
  units: {p_ac: kW, inverter.temp: degC}
  checks: {min_gap: 10m}
  asset_attributes:
    key_prefix: [warehouse]
    group_name: plants
    owners: ["team:ot-data"]
    tags: {tier: gold}
    kinds: [scada]
    automation_condition: "{{ dg.AutomationCondition.on_cron('0 * * * *') }}"
"""

RICH_ROLLUPS = """\
type: data_platform.lib.TimescaleAggregateComponent
attributes:
  source: {schema: raw, table: influx_hist, assets: [warehouse/rich/inverter]}
  target: {schema: rollups, name_prefix: rich}
  partitions: {start: "2025-01-01", granularity: daily}
  buckets:
    - width: 1 hour
    - width: 1 day
      refresh: {start_offset: 3 days, end_offset: 1 day, schedule_interval: 1 day}
  aggregates: [avg, max, count]
  refresh: {start_offset: 6 hours, end_offset: 15 minutes, schedule_interval: 15 minutes}
  translation:
    key: "warehouse/{{ rollup.suffix }}/{{ rollup.name }}"
    tags: {bucket: "{{ rollup.suffix }}"}
"""


@pytest.fixture
def catalogue() -> Iterator[DefsFolderSandbox]:
    """The project's own YAML files and two that use every kind of field."""
    files = {
        str(path.parent.relative_to(PROJECT_DEFS)): path.read_text()
        for path in PROJECT_DEFS.rglob("defs.yaml")
    }
    files |= {"rich/ingest": RICH_INGEST, "rich/rollups": RICH_ROLLUPS}
    with create_defs_folder_sandbox() as sandbox:
        for folder, text in files.items():
            (sandbox.defs_folder_path / folder).mkdir(parents=True)
            (sandbox.defs_folder_path / folder / "defs.yaml").write_text(text)
        yield sandbox


def build(sandbox: DefsFolderSandbox) -> dg.Definitions:
    with sandbox.build_all_defs() as defs:
        return defs


def test_cached_resolution_builds_what_dagsters_own_builds(catalogue, monkeypatch):
    cached = describe_definitions(build(catalogue))
    assert "warehouse/rich/inverter" in cached["assets"]
    assert "warehouse/1h/rich_1h" in cached["assets"]
    assert len(cached["assets"]) > 10
    monkeypatch.setattr(resolution, "resolve_fields_cached", resolved_base.resolve_fields)
    monkeypatch.setattr(
        CachedTemplateResolutionContext,
        "_resolve_inner_value",
        ResolutionContext._resolve_inner_value,
    )
    assert describe_definitions(build(catalogue)) == cached


def test_shims_off_resolve_with_dagsters_own_resolution(catalogue, monkeypatch):
    cached = describe_definitions(build(catalogue))
    monkeypatch.setenv(SWITCH, "off")
    compiled_template.cache_clear()
    resolution._fields_of.cache_clear()
    assert describe_definitions(build(catalogue)) == cached
    assert compiled_template.cache_info().currsize == 0  # nothing went through the caches
    assert resolution._fields_of.cache_info().currsize == 0


def test_field_resolvers_are_worked_out_once_per_class(catalogue):
    resolution._fields_of.cache_clear()
    build(catalogue)
    classes = resolution._fields_of.cache_info().misses
    build(catalogue)
    info = resolution._fields_of.cache_info()
    assert classes > 5  # the components and their blocks
    assert info.misses == classes and info.hits > 0
