"""Bad YAML fails when definitions load, naming the file, the field and the fix.

Most cases load one defs.yaml in a sandbox (fast); a few go through `dg check yaml` and
`dg check defs` in a copy of the project, as CI runs them. A secret's variable that is not
set is the one mistake that waits for the run: definitions load without secrets.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from data_platform.lib.warehouse import WarehouseResource
from data_platform_tests.helpers import error_chain, load_yaml_component, run_assets
from data_platform_tests.project_copy import copy_project
from data_platform_tests.project_copy import dg as run_dg
from data_platform_tests.reliability.support import PARTITION, SECRET, failure_text

pytestmark = pytest.mark.integration

INGEST = "data_platform.lib.InfluxIngestComponent"
ROLLUP = "data_platform.lib.TimescaleAggregateComponent"

SOURCE: dict[str, Any] = {
    "name": "plant",
    "influx": {"url": "http://127.0.0.1:8086", "database": "plant"},
    "measurements": [{"name": "inverter"}],
    "partitions": {"start": "2024-03-01", "granularity": "hourly"},
}
ROLLUPS: dict[str, Any] = {
    "source": {"schema": "raw", "assets": ["plant/inverter"]},
    "target": {"schema": "rollups", "name_prefix": "power"},
    "partitions": {"start": "2024-03-01", "granularity": "hourly"},
    "buckets": [{"width": "1 minute"}, {"width": "1 hour"}],
}
REFRESH = {"start_offset": "3 hours", "end_offset": "1 minute", "schedule_interval": "30 minutes"}


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with the dotted `path` set to `value` (removed when value is `...`)."""
    attrs = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = attrs
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return attrs


def load_error(attributes: dict[str, Any], type_name: str = INGEST) -> tuple[str, Path]:
    """The load error of one defs.yaml (message and causes), and the file's path."""
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "source"
        folder.mkdir(parents=True)
        defs_yaml = folder / "defs.yaml"
        defs_yaml.write_text(
            yaml.safe_dump({"type": type_name, "attributes": attributes}, allow_unicode=True)
        )
        with (
            pytest.raises(Exception) as info,
            sandbox.load_component_and_build_defs(defs_path=folder),
        ):
            pass
        return error_chain(info.value), defs_yaml


INGEST_CASES = [
    pytest.param(
        "influx.version",
        "4",
        ["influx.version is '4'", "write auto (ask the server), 1, 2 or 3"],
        id="unknown-generation",
    ),
    pytest.param(
        "influx.discovery_lookback",
        "a while",
        ["influx.discovery_lookback", "is not a duration", "Fix: write a number and a unit"],
        id="lookback-not-a-duration",
    ),
    pytest.param(
        "influx.discovery_lookback",
        "2 months",
        ["influx.discovery_lookback", "calendar months", "in days or weeks"],
        id="lookback-in-months",
    ),
    pytest.param("partition", {}, ["partition", "not permitted"], id="unknown-key"),
    pytest.param(
        "influx.pasword_env", "INFLUX_PASSWORD", ["pasword_env", "not permitted"], id="nested-typo"
    ),
    pytest.param(
        "influx.verify_tls", "maybe", ["verify_tls", "valid boolean"], id="wrong-type-bool"
    ),
    pytest.param(
        "influx.chunk_size",
        "lots",
        ["chunk_size", "valid integer"],
        id="wrong-type-number",
    ),
    pytest.param(
        "max_attempts",
        "three",
        ["max_attempts", "valid integer"],
        id="wrong-type-attempts",
    ),
    pytest.param(
        "measurements",
        "inverter",
        ["measurements is the string 'inverter'; it must be a list", "Fix: write a YAML list"],
        id="wrong-type-list",
    ),
    pytest.param(
        "measurements",
        "{{ 'inverter' }}",
        ["measurements is a template that renders to a str; it must be a list", "Fix:"],
        id="wrong-type-template",
    ),
    pytest.param(
        "partitions",
        "hourly",
        ["partitions is the string 'hourly'; it must be a block", "Fix: write a block"],
        id="wrong-type-block",
    ),
    pytest.param(
        "measurements",
        [{"name": "inverter", "tags": "site"}],
        ["measurements[0].tags is the string 'site'; it must be a mapping", "Fix: write a mapping"],
        id="wrong-type-nested-mapping",
    ),
    pytest.param(
        "influx.chunk_size",
        10,
        ["influx.chunk_size is 10", "between 100 and 1,000,000"],
        id="out-of-range",
    ),
    pytest.param(
        "partitions.lateness",
        "3 fortnights",
        ["partitions.lateness", "e.g. '30s'"],
        id="bad-duration",
    ),
    pytest.param(
        "partitions.backfill_window",
        "90 minutes",
        [
            "partitions.backfill_window",
            "'90 minutes' is not a whole number of 1 hour partitions",
            "Fix: use a multiple of the partition width",
        ],
        id="backfill-window-not-whole-partitions",
    ),
    pytest.param(
        "checks.max_lag", "soon", ["max_lag", "write a number and a unit"], id="bad-check-duration"
    ),
    pytest.param(
        "partitions.start", "01/02/2024", ["partitions.start", "'YYYY-MM-DD'"], id="bad-start"
    ),
    pytest.param(
        "partitions.start",
        "2999-01-01",
        ["partitions.start", "pick a past date"],
        id="future-start",
    ),
    pytest.param(
        "partitions.granularity",
        "weekly",
        ["granularity", "'15min', 'hourly' or 'daily'"],
        id="bad-granularity",
    ),
    pytest.param("name", ..., ["name", "Field required"], id="missing-name"),
    pytest.param("name", "plant-north", ["name", "should match pattern"], id="bad-name"),
    pytest.param(
        "files", {"paths": ["x.lp"]}, ["`influx`", "`files`", "`source` to choose"], id="both"
    ),
    pytest.param("influx", ..., ["`influx`", "`files`", "`source` to choose"], id="neither"),
    pytest.param("source", "http", ["`source`", "write `influx` or `files`"], id="bad-source"),
    pytest.param(
        "source", "files", ["`files` block is missing", "add it"], id="source-without-block"
    ),
    pytest.param(
        "influx.url",
        f"http://admin:{SECRET}@127.0.0.1:8086",
        ["influx.url", "username_env/password_env"],
        id="credentials-in-url",
    ),
    pytest.param(
        "influx.url",
        f"admin:{SECRET}@influx.example.com:8086",
        ["influx.url", "***@influx.example.com:8086", "'http://localhost:8086'"],
        id="credentials-without-scheme",
    ),
    pytest.param(
        "influx.password_env",
        SECRET,
        ["password_env", "variable's NAME"],
        id="password-in-env-setting",
    ),
    pytest.param(
        "influx.token_env", "INFLUX-TOKEN", ["token_env", "environment variable"], id="bad-env-name"
    ),
    pytest.param(
        "influx.username_env",
        "INFLUX_USERNAME",
        ["username_env and password_env go together", "set both"],
        id="user-without-password",
    ),
    pytest.param(
        "influx",
        {**SOURCE["influx"], "token_env": "T", "username_env": "U", "password_env": "P"},
        ["token_env", "not both"],
        id="token-and-password",
    ),
    pytest.param(
        "influx.url", "localhost:8086", ["influx.url", "'http://localhost:8086'"], id="bad-url"
    ),
    pytest.param(
        "influx.database", " ", ["influx.database", "name the database"], id="empty-database"
    ),
    pytest.param(
        "influx.format", "xml", ["format", "'auto', 'msgpack', 'csv' or 'json'"], id="bad-format"
    ),
    pytest.param(
        "signal_name", "{{ tags.site", ["signal_name", "not a valid template"], id="bad-template"
    ),
    pytest.param(
        "measurements",
        [{"name": "inverter"}, {"name": "inverter"}],
        ["`measurements`", "listed twice"],
        id="duplicate-measurement",
    ),
    pytest.param(
        "measurements",
        [{"name": "grid meter"}, {"name": "grid_meter"}],
        ["same asset name", "set `asset_name`"],
        id="duplicate-asset-name",
    ),
    pytest.param(
        "measurements",
        [{"name": "inverter", "asset_name": "in-verter"}],
        ["asset_name", "letters, digits and underscores"],
        id="bad-asset-name",
    ),
    pytest.param(
        "measurements",
        [{"name": "inverter", "tags": {"site": "north"}}],
        ["tags", "site", "valid array"],
        id="tag-filter-not-a-list",
    ),
    pytest.param(
        "on_timestamp_collision",
        "last",
        ["on_timestamp_collision", "'fail', 'keep_first'"],
        id="bad-collision-policy",
    ),
    pytest.param("target.schema", "s" * 64, ["schema", "1 to 63 bytes"], id="schema-too-long"),
    pytest.param(
        "target.chunk_interval",
        "a week",
        ["target.chunk_interval", "write a number and a unit"],
        id="bad-chunk-interval",
    ),
    pytest.param(
        "automation.ingest", "hourly", ["ingest", "'cadence' or 'none'"], id="bad-automation"
    ),
    pytest.param(
        "backfill_partitions_per_run",
        0,
        ["backfill_partitions_per_run is 0", "between 1 and 10,000"],
        id="bad-backfill-size",
    ),
    pytest.param(
        "checks.gap_factor", 0.5, ["checks.gap_factor is 0.5", "above 1"], id="bad-gap-factor"
    ),
]

FILES_CASES = [
    pytest.param("files.paths", [], ["files.paths", "list at least one file"], id="no-paths"),
    pytest.param(
        "files.precision", "minutes", ["precision", "'ns', 'us', 'ms' or 's'"], id="bad-precision"
    ),
    pytest.param("files.on_error", "ignore", ["on_error", "'fail' or 'skip'"], id="bad-on-error"),
]

ROLLUP_CASES = [
    pytest.param(
        "aggregates",
        "avg",
        ["aggregates is the string 'avg'; it must be a list", "Fix: write a YAML list"],
        id="wrong-type-list",
    ),
    pytest.param(
        "refresh",
        {**REFRESH, "start_offset": "90 minutes"},
        ["refresh.start_offset", "TimescaleDB rejects", "Fix: set start_offset to at least"],
        id="refresh-window-rejected",
    ),
    pytest.param(
        "retention",
        {"drop_after": "1 hour"},
        ["retention.drop_after", "Fix: make drop_after at least the refresh start_offset"],
        id="retention-inside-refresh-window",
    ),
    pytest.param(
        "retention",
        {"raw_drop_after": "2 hours"},
        ["retention.raw_drop_after", "Fix: keep the input at least 3 hours"],
        id="raw-retention-shorter-than-refresh",
    ),
    pytest.param(
        "buckets",
        [{"width": "1 minute"}, {"width": "90 seconds"}],
        ["buckets[1].width", "Fix: make it a multiple of 1 minute"],
        id="widths-not-multiples",
    ),
    pytest.param(
        "aggregates",
        ["avg", "median"],
        ["aggregates[1]", "unknown aggregate 'median'", "Fix: use a subset of"],
        id="unknown-aggregate",
    ),
    pytest.param(
        "partitions.granularity",
        "weekly",
        ["partitions.granularity", "Fix: use 15min, hourly or daily"],
        id="rollup-bad-granularity",
    ),
    pytest.param(
        "partitions.start",
        "2024-03-01T00:30:00",
        ["partitions.start", "boundary"],
        id="rollup-start-off-boundary",
    ),
    pytest.param(
        "buckets", [{"width": "1 fortnight"}], ["buckets[0].width", "'1 minute'"], id="bad-interval"
    ),
    pytest.param(
        "materialized_only", "sometimes", ["materialized_only", "boolean"], id="rollup-wrong-type"
    ),
    pytest.param(
        "bucket", [{"width": "1 minute"}], ["bucket", "Extra inputs"], id="rollup-unknown-key"
    ),
]


def assert_explains(message: str, defs_yaml: Path, expected: list[str]) -> None:
    # The file: `<path>:<line>` for a field's error; the component tree (folder and
    # defs.yaml, marked `(error)`) for errors that involve several fields.
    assert str(defs_yaml) in message or ("defs.yaml (" in message and "(error)" in message)
    explanation = "\n".join(line for line in message.splitlines() if 'File "' not in line)
    for part in expected:
        assert part in explanation, f"{part!r} missing from:\n{message}"
    # A secret written into the YAML shows in the file's snippet; nowhere else.
    snippet = [line for line in message.splitlines() if line.lstrip()[:1].isdigit()]
    assert SECRET not in "\n".join(line for line in explanation.splitlines() if line not in snippet)


@pytest.mark.parametrize(("path", "value", "expected"), INGEST_CASES)
def test_bad_ingest_setting_fails_at_load(path: str, value: Any, expected: list[str]) -> None:
    message, defs_yaml = load_error(changed(SOURCE, path, value))
    assert_explains(message, defs_yaml, expected)


@pytest.mark.parametrize(("path", "value", "expected"), FILES_CASES)
def test_bad_files_setting_fails_at_load(path: str, value: Any, expected: list[str]) -> None:
    files_source = changed(changed(SOURCE, "influx", ...), "files", {"paths": ["exports/*.lp"]})
    message, defs_yaml = load_error(changed(files_source, path, value))
    assert_explains(message, defs_yaml, expected)


@pytest.mark.parametrize(("path", "value", "expected"), ROLLUP_CASES)
def test_bad_rollup_setting_fails_at_load(path: str, value: Any, expected: list[str]) -> None:
    message, defs_yaml = load_error(changed({**ROLLUPS, "refresh": REFRESH}, path, value), ROLLUP)
    assert_explains(message, defs_yaml, expected)


def test_url_from_the_environment_never_shows_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A URL with credentials set in INFLUX_URL is refused without echoing it."""
    monkeypatch.setenv("INFLUX_URL", f"https://admin:{SECRET}@influx.example.com:8086")
    message, defs_yaml = load_error(changed(SOURCE, "influx.url", "{{ env.INFLUX_URL }}"))
    assert_explains(message, defs_yaml, ["influx.url", "credentials in the URL"])


def test_password_rendered_into_its_env_setting_is_not_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`password_env: "{{ env.INFLUX_PASSWORD }}"` puts the secret where its name belongs."""
    monkeypatch.setenv("INFLUX_PASSWORD", SECRET)
    attrs = changed(
        SOURCE,
        "influx",
        {
            **SOURCE["influx"],
            "username_env": "INFLUX_USERNAME",
            "password_env": "{{ env.INFLUX_PASSWORD }}",
        },
    )
    message, defs_yaml = load_error(attrs)
    assert_explains(message, defs_yaml, ["influx.password_env", "variable's NAME"])


def test_secret_variable_missing_fails_the_run_not_the_load(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANT_INFLUX_USER", "reader")
    monkeypatch.delenv("PLANT_INFLUX_PASSWORD", raising=False)
    attrs = changed(
        SOURCE,
        "influx",
        {
            **SOURCE["influx"],
            "username_env": "PLANT_INFLUX_USER",
            "password_env": "PLANT_INFLUX_PASSWORD",
        },
    )
    with load_yaml_component(attrs) as (_component, defs):
        result = run_assets(defs, warehouse_url, partition_key=PARTITION, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "influx.password_env" in text and "PLANT_INFLUX_PASSWORD" in text
    assert "not set" in text and "source 'plant'" in text


def test_warehouse_url_missing_fails_the_run_not_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    with load_yaml_component(SOURCE) as (_component, defs):
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
        with pytest.raises(dg.DagsterInvalidConfigError, match="WAREHOUSE_URL"):
            dg.materialize(
                assets,
                partition_key=PARTITION,
                resources={"warehouse": WarehouseResource(url=dg.EnvVar("WAREHOUSE_URL"))},
            )


# -- through dg, as CI runs it ---------------------------------------------------------------


def project_with(tmp_path: Path, files: dict[str, dict[str, Any]], *, keep: bool) -> Path:
    """A copy of the project with extra defs.yaml files (folder -> document)."""
    project = copy_project(tmp_path / "project")
    defs = project / "data_platform" / "defs"
    if not keep:
        # `dg check yaml` validates one file per component type: leave only the broken ones.
        for folder in ("plants", "rollups"):
            shutil.rmtree(defs / folder)
    for folder, document in files.items():
        path = defs / folder / "defs.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump(document))
    return project


@pytest.mark.e2e
def test_dg_check_yaml_names_each_broken_file(tmp_path: Path) -> None:
    project = project_with(
        tmp_path,
        {
            "broken/typo": {"type": INGEST, "attributes": {**SOURCE, "partition": {}}},
            "broken/unknown_type": {"type": "data_platform.lib.InfluxIngest", "attributes": {}},
            "broken/rollups": {"type": ROLLUP, "attributes": {**ROLLUPS, "bucket": []}},
        },
        keep=False,
    )
    result = run_dg(project, "check", "yaml", timeout=120)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    defs = project / "data_platform" / "defs" / "broken"
    assert f"{defs / 'typo' / 'defs.yaml'}:" in out and "'partition' was unexpected" in out
    assert f"{defs / 'unknown_type' / 'defs.yaml'}:" in out
    assert "Component type 'data_platform.lib.InfluxIngest' not found" in out
    assert f"{defs / 'rollups' / 'defs.yaml'}:" in out and "'bucket' was unexpected" in out


@pytest.mark.e2e
def test_dg_check_defs_names_file_field_and_fix(tmp_path: Path) -> None:
    broken = changed(SOURCE, "partitions.lateness", "a while")
    project = project_with(tmp_path, {"broken": {"type": INGEST, "attributes": broken}}, keep=True)
    result = run_dg(project, "check", "defs", timeout=120)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"{project / 'data_platform' / 'defs' / 'broken' / 'defs.yaml'}:" in out
    assert "partitions.lateness: 'a while' is not a duration" in out and "e.g. '30s'" in out


@pytest.mark.e2e
def test_dg_check_defs_names_both_files_of_a_duplicate_source(tmp_path: Path) -> None:
    twin = {**SOURCE, "name": "plant_north", "measurements": [{"name": "inverter"}]}
    project = project_with(
        tmp_path, {"plants/plant_north_copy": {"type": INGEST, "attributes": twin}}, keep=True
    )
    result = run_dg(project, "check", "defs", timeout=120)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    plants = project / "data_platform" / "defs" / "plants"
    assert str(plants / "plant_north_copy" / "defs.yaml") in out
    assert str(plants / "plant_north" / "defs.yaml") in out
    assert "plant_north/inverter: defined in" in out
    assert "Fix: give each source its own `name`" in out
