import re
import textwrap
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from data_platform.utils import environment_helpers
from data_platform.utils.environment_helpers import (
    Deployment,
    get_database_for_environment,
    get_deployment_name,
    get_environment,
    get_local_suffix,
    get_schema_for_environment,
    to_identifier,
)

UNQUOTED_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

DEPLOYMENT_VARIABLES = (
    "DATA_PLATFORM_ENV",
    "DATA_PLATFORM_SANDBOX",
    "DATA_PLATFORM_DATABASE",
    "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT",
    "DAGSTER_CLOUD_DEPLOYMENT_NAME",
    "DAGSTER_CLOUD_PULL_REQUEST_ID",
    "DAGSTER_CLOUD_GIT_BRANCH",
)


@pytest.fixture
def deployment_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No deployment variables set, and the OS user is `alice`."""
    for name in DEPLOYMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(environment_helpers.getpass, "getuser", lambda: "alice")
    yield monkeypatch


def _set(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("variables", "deployment", "schema", "database"),
    [
        pytest.param({}, "local", "raw_alice", "warehouse_local", id="laptop"),
        pytest.param(
            {"DATA_PLATFORM_SANDBOX": "Bob's Sandbox"},
            "local",
            "raw_bob_s_sandbox",
            "warehouse_local",
            id="named-sandbox",
        ),
        pytest.param(
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}, "prod", "raw", "warehouse", id="prod"
        ),
        pytest.param(
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "staging"},
            "staging",
            "raw_staging",
            "warehouse_staging",
            id="staging",
        ),
        pytest.param(
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "EU-Staging"},
            "staging",
            "raw_staging",
            "warehouse_staging",
            id="named-staging",
        ),
        pytest.param(
            {
                "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1",
                "DAGSTER_CLOUD_DEPLOYMENT_NAME": "feature-x",
                "DAGSTER_CLOUD_GIT_BRANCH": "feature/x",
                "DAGSTER_CLOUD_PULL_REQUEST_ID": "123",
            },
            "branch",
            "raw_pr_123",
            "warehouse_branch",
            id="pull-request",
        ),
        pytest.param(
            {
                "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "true",
                "DAGSTER_CLOUD_DEPLOYMENT_NAME": "add-sensor",
                "DAGSTER_CLOUD_GIT_BRANCH": "Feature/Add-Sensor",
            },
            "branch",
            "raw_feature_add_sensor",
            "warehouse_branch",
            id="branch-without-pr",
        ),
        pytest.param(
            {"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "my-br"},
            "branch",
            "raw_my_br",
            "warehouse_branch",
            id="branch-only-named",
        ),
        pytest.param(
            {
                "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "0",
                "DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod",
                "DAGSTER_CLOUD_GIT_BRANCH": "main",
            },
            "prod",
            "raw",
            "warehouse",
            id="branch-flag-off",
        ),
        pytest.param(
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "qa", "DAGSTER_CLOUD_GIT_BRANCH": "main"},
            "branch",
            "raw_qa",
            "warehouse_branch",
            id="other-full-deployment",
        ),
        pytest.param(
            {"DATA_PLATFORM_ENV": "staging", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"},
            "staging",
            "raw_staging",
            "warehouse_staging",
            id="explicit-wins",
        ),
        pytest.param(
            {"DATA_PLATFORM_ENV": " PROD "}, "prod", "raw", "warehouse", id="explicit-normalized"
        ),
        pytest.param(
            {"DATA_PLATFORM_ENV": "branch"},
            "branch",
            "raw_alice",
            "warehouse_branch",
            id="explicit-branch-on-laptop",
        ),
        pytest.param(
            {"DATA_PLATFORM_ENV": "", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"},
            "prod",
            "raw",
            "warehouse",
            id="empty-explicit-ignored",
        ),
        pytest.param(
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod", "DATA_PLATFORM_DATABASE": "Plant-DB"},
            "prod",
            "raw",
            "plant_db",
            id="database-override-prod",
        ),
        pytest.param(
            {"DATA_PLATFORM_DATABASE": "plant"},
            "local",
            "raw_alice",
            "plant_local",
            id="database-override-local",
        ),
    ],
)
def test_names_per_deployment(
    deployment_env: pytest.MonkeyPatch,
    variables: dict[str, str],
    deployment: Deployment,
    schema: str,
    database: str,
) -> None:
    _set(deployment_env, variables)

    assert get_environment() == deployment
    assert get_schema_for_environment("raw") == schema
    assert get_database_for_environment() == database


def test_invalid_explicit_environment_names_variable_and_choices(
    deployment_env: pytest.MonkeyPatch,
) -> None:
    deployment_env.setenv("DATA_PLATFORM_ENV", "production")

    with pytest.raises(
        ValueError, match=r"DATA_PLATFORM_ENV='production'.*local, branch, staging, prod"
    ):
        get_environment()


@pytest.mark.parametrize(
    ("variables", "name"),
    [
        ({}, "local"),
        ({"DATA_PLATFORM_ENV": "prod"}, "prod"),
        ({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}, "prod"),
        (
            {"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "f-1"},
            "f-1",
        ),
    ],
)
def test_deployment_name(
    deployment_env: pytest.MonkeyPatch, variables: dict[str, str], name: str
) -> None:
    _set(deployment_env, variables)

    assert get_deployment_name() == name


def _raise_key_error() -> str:
    raise KeyError("getpwuid(): uid not found: 1000")


@pytest.mark.parametrize(
    ("sandbox", "getuser", "suffix"),
    [
        (None, lambda: "alice", "alice"),
        ("", lambda: "alice", "alice"),
        ("  ", lambda: "alice", "alice"),
        ("Team Rollups", lambda: "alice", "team_rollups"),
        (None, lambda: "José.García", "jose_garcia"),
        (None, lambda: "", "dev"),
        (None, _raise_key_error, "dev"),
    ],
)
def test_local_suffix(
    deployment_env: pytest.MonkeyPatch,
    sandbox: str | None,
    getuser: object,
    suffix: str,
) -> None:
    if sandbox is not None:
        deployment_env.setenv("DATA_PLATFORM_SANDBOX", sandbox)
    deployment_env.setattr(environment_helpers.getpass, "getuser", getuser)

    assert get_local_suffix() == suffix


@pytest.mark.parametrize(
    ("text", "identifier"),
    [
        ("raw", "raw"),
        ("Raw", "raw"),
        ("RAW_Data", "raw_data"),
        ("o'brien", "o_brien"),
        ('say "hi"', "say_hi"),
        ("first last", "first_last"),
        ("  padded  ", "padded"),
        ("my-branch", "my_branch"),
        ("feature/ABC-12", "feature_abc_12"),
        ("josé", "jose"),
        ("Jürgen Müller", "jurgen_muller"),
        ("ﬁle", "file"),
        ("a;drop schema x", "a_drop_schema_x"),
        ("123abc", "_123abc"),
        ("2024", "_2024"),
        ("dev_", "dev"),
        ("_private", "private"),
        ("a__b", "a__b"),
    ],
)
def test_to_identifier(text: str, identifier: str) -> None:
    assert to_identifier(text) == identifier
    assert UNQUOTED_IDENTIFIER.match(identifier)


@pytest.mark.parametrize("text", ["日本語", "!!!", "—"])
def test_to_identifier_without_usable_characters_hashes(text: str) -> None:
    identifier = to_identifier(text)

    assert UNQUOTED_IDENTIFIER.match(identifier)
    assert re.fullmatch(r"x[0-9a-f]{8}", identifier)
    assert to_identifier(text) == identifier


def test_to_identifier_keeps_unusable_names_apart() -> None:
    assert to_identifier("日本語") != to_identifier("中文")


@pytest.mark.parametrize("text", ["", "   "])
def test_to_identifier_rejects_empty(text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        to_identifier(text)


def test_long_names_are_truncated_stably_and_stay_distinct() -> None:
    long_a, long_b = "a" * 100, "a" * 99 + "b"

    identifier = to_identifier(long_a)

    assert len(identifier.encode()) == 63
    assert UNQUOTED_IDENTIFIER.match(identifier)
    assert identifier.startswith("a" * 54 + "_")
    assert to_identifier(long_a) == identifier
    assert to_identifier(long_b) != identifier
    assert to_identifier("a" * 63) == "a" * 63


def test_long_user_name_gives_a_valid_schema(deployment_env: pytest.MonkeyPatch) -> None:
    deployment_env.setattr(environment_helpers.getpass, "getuser", lambda: "Ü" * 100)

    schema = get_schema_for_environment("raw")

    assert UNQUOTED_IDENTIFIER.match(schema)
    assert schema.startswith("raw_uuu")
    assert len(schema) == 63


class EnvironmentProbeComponent(dg.Component, dg.Resolvable, dg.Model):
    """Records the names its YAML rendered, so tests can read them back."""

    database: str
    schema_name: str
    table: str
    deployment: str

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(assets=[dg.AssetSpec("probe", metadata={"database": self.database})])


PROBE_YAML = textwrap.dedent(
    """\
    type: data_platform_tests.utils.test_environment_helpers.EnvironmentProbeComponent
    template_vars_module: data_platform.utils.environment_helpers
    attributes:
      database: "{{ database }}"
      schema_name: "{{ schema_for('raw') }}"
      table: "{{ schema_for('rollups') }}.readings_1h"
      deployment: "{{ deployment }}"
    """
)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"},
            ("warehouse", "raw", "rollups.readings_1h", "prod"),
        ),
        (
            {"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_PULL_REQUEST_ID": "7"},
            ("warehouse_branch", "raw_pr_7", "rollups_pr_7.readings_1h", "branch"),
        ),
        ({}, ("warehouse_local", "raw_alice", "rollups_alice.readings_1h", "local")),
    ],
)
def test_component_yaml_renders_template_vars(
    deployment_env: pytest.MonkeyPatch,
    variables: dict[str, str],
    expected: tuple[str, str, str, str],
) -> None:
    _set(deployment_env, variables)

    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.defs_folder_path / "probe"
        defs_path.mkdir()
        (defs_path / "defs.yaml").write_text(PROBE_YAML)
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert isinstance(component, EnvironmentProbeComponent)
            rendered = (
                component.database,
                component.schema_name,
                component.table,
                component.deployment,
            )
            assert defs.resolve_assets_def("probe").key == dg.AssetKey("probe")

    assert rendered == expected
