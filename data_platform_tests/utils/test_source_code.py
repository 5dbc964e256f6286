import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

from data_platform.utils import source_code
from data_platform.utils.source_code import (
    GitContext,
    browsable_git_url,
    get_git_context,
    with_code_references,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GIT_VARIABLES = (
    "DATA_PLATFORM_GIT_URL",
    "DAGSTER_CLOUD_GIT_URL",
    "GIT_SHA",
    "DAGSTER_CLOUD_GIT_SHA",
)


class TinyComponent(dg.Component, dg.Resolvable, dg.Model):
    """One materializable asset and the external table it reads."""

    key: str
    upstream: str

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        @dg.asset(key=self.key, deps=[self.upstream])
        def _built() -> None: ...

        return dg.Definitions(assets=[_built, dg.AssetSpec(self.upstream)])


COMPONENT_YAML = textwrap.dedent(
    """\
    # two components in one file: each asset points at its own document
    type: data_platform_tests.utils.test_source_code.TinyComponent
    attributes:
      key: rollup
      upstream: readings
    ---
    type: data_platform_tests.utils.test_source_code.TinyComponent
    attributes:
      key: rollup_daily
      upstream: events
    """
)
COMPONENT_LINES = {"rollup": 2, "readings": 2, "rollup_daily": 7, "events": 7}

PYTHON_DEFS = textwrap.dedent(
    """\
    import dagster as dg


    @dg.asset(
        partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"),
        check_specs=[dg.AssetCheckSpec("has_rows", asset="meters")],
    )
    def meters() -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


    @dg.asset_check(asset=meters)
    def meters_fresh() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)


    meters_job = dg.define_asset_job("meters_job", selection=[meters])
    meters_schedule = dg.ScheduleDefinition(
        job=meters_job, cron_schedule="@daily"
    )
    """
)
PYTHON_LINE = 4


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in GIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def sandbox() -> Iterator[DefsFolderSandbox]:
    """A project with a component YAML and a Python module in its defs folder."""
    with create_defs_folder_sandbox() as sandbox:
        (sandbox.defs_folder_path / "rollups").mkdir()
        (sandbox.defs_folder_path / "rollups" / "defs.yaml").write_text(COMPONENT_YAML)
        (sandbox.defs_folder_path / "meters.py").write_text(PYTHON_DEFS)
        yield sandbox


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-C",
            str(directory),
            "-c",
            "user.name=ci",
            "-c",
            "user.email=ci@example.com",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _references(defs: dg.Definitions) -> dict[str, list[source_code.CodeReference]]:
    references: dict[str, list[source_code.CodeReference]] = {}
    for spec in defs.resolve_all_asset_specs():
        value = spec.metadata.get(source_code.CODE_REFERENCES_KEY)
        if isinstance(value, dg.CodeReferencesMetadataValue):
            references[spec.key.to_user_string()] = value.code_references
    return references


def _in_project(sandbox: DefsFolderSandbox, *parts: str) -> str:
    """Path of a defs file relative to the sandbox's project root, as a repository sees it."""
    return "/".join(["src", sandbox.project_name, "defs", *parts])


def _expected_urls(sandbox: DefsFolderSandbox, base: str) -> dict[str, list[str]]:
    yaml_path = _in_project(sandbox, "rollups", "defs.yaml")
    return {
        **{key: [f"{base}/{yaml_path}#L{line}"] for key, line in COMPONENT_LINES.items()},
        "meters": [f"{base}/{_in_project(sandbox, 'meters.py')}#L{PYTHON_LINE}"],
    }


def _urls(defs: dg.Definitions) -> dict[str, list[str]]:
    urls: dict[str, list[str]] = {}
    for key, references in _references(defs).items():
        assert all(isinstance(reference, dg.UrlCodeReference) for reference in references)
        urls[key] = [reference.source for reference in references]
    return urls


def test_links_python_and_yaml_assets_to_the_deployed_commit(
    git_env: pytest.MonkeyPatch, sandbox: DefsFolderSandbox
) -> None:
    git_env.setenv("DATA_PLATFORM_GIT_URL", "https://github.com/acme/data-platform")
    git_env.setenv("GIT_SHA", "abc123")

    with sandbox.build_all_defs() as defs:
        linked = with_code_references(defs, sandbox.project_root)

        assert _urls(linked) == _expected_urls(
            sandbox, "https://github.com/acme/data-platform/blob/abc123"
        )


def test_leaves_everything_but_references_alone(
    git_env: pytest.MonkeyPatch, sandbox: DefsFolderSandbox
) -> None:
    git_env.setenv("DATA_PLATFORM_GIT_URL", "https://github.com/acme/data-platform")
    git_env.setenv("GIT_SHA", "abc123")

    with sandbox.build_all_defs() as defs:
        linked = with_code_references(defs, sandbox.project_root)
        before, after = defs.resolve_asset_graph(), linked.resolve_asset_graph()
        repository = linked.get_repository_def()

    assert after.get_all_asset_keys() == before.get_all_asset_keys()
    assert after.asset_check_keys == before.asset_check_keys
    assert {check.name for check in after.asset_check_keys} == {"has_rows", "meters_fresh"}
    meters = after.get(dg.AssetKey("meters"))
    assert meters.partitions_def == dg.DailyPartitionsDefinition(start_date="2024-01-01")
    assert after.get(dg.AssetKey("rollup")).parent_keys == {dg.AssetKey("readings")}
    assert not after.get(dg.AssetKey("readings")).is_materializable
    assert repository.get_job("meters_job").asset_layer.executable_asset_keys == {
        dg.AssetKey("meters")
    }
    assert [schedule.name for schedule in repository.schedule_defs] == ["meters_job_schedule"]
    for key in before.get_all_asset_keys():
        old, new = before.get(key).metadata, after.get(key).metadata
        assert {name: old[name] for name in old if name != source_code.CODE_REFERENCES_KEY} == {
            name: new[name] for name in new if name != source_code.CODE_REFERENCES_KEY
        }


def test_keeps_local_references_without_git(
    git_env: pytest.MonkeyPatch, sandbox: DefsFolderSandbox
) -> None:
    with sandbox.build_all_defs() as defs:
        assert get_git_context(sandbox.project_root) is None
        linked = with_code_references(defs, sandbox.project_root)

        references = _references(linked)

    yaml_path = str(sandbox.defs_folder_path / "rollups" / "defs.yaml")
    assert references == {
        **{
            key: [dg.LocalFileCodeReference(file_path=yaml_path, line_number=line)]
            for key, line in COMPONENT_LINES.items()
        },
        "meters": [
            dg.LocalFileCodeReference(
                file_path=str(sandbox.defs_folder_path / "meters.py"), line_number=PYTHON_LINE
            )
        ],
    }


def test_reads_remote_and_commit_from_the_checkout(
    git_env: pytest.MonkeyPatch, sandbox: DefsFolderSandbox
) -> None:
    _git(sandbox.project_root, "init", "--quiet")
    _git(sandbox.project_root, "remote", "add", "origin", "git@github.com:acme/dp.git")
    _git(sandbox.project_root, "commit", "--quiet", "--allow-empty", "-m", "initial")
    head = _git(sandbox.project_root, "rev-parse", "HEAD")

    with sandbox.build_all_defs() as defs:
        linked = with_code_references(defs, sandbox.defs_folder_path)

        assert _urls(linked) == _expected_urls(sandbox, f"https://github.com/acme/dp/blob/{head}")


def test_deployment_variables_fill_what_the_checkout_lacks(
    git_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _git(tmp_path, "init", "--quiet")
    _git(tmp_path, "commit", "--quiet", "--allow-empty", "-m", "initial")
    head = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "project").mkdir()
    git_env.setenv("DAGSTER_CLOUD_GIT_URL", "https://gitlab.com/acme/dp.git")

    context = get_git_context(tmp_path / "project")

    assert context is not None
    assert context == GitContext(
        url="https://gitlab.com/acme/dp", revision=head, root=tmp_path.resolve()
    )
    assert (
        context.url_for(tmp_path / "project" / "defs.yaml", 3)
        == f"https://gitlab.com/acme/dp/-/blob/{head}/project/defs.yaml#L3"
    )


@dg.asset
def defined_here() -> None: ...


def test_python_asset_in_this_repository(git_env: pytest.MonkeyPatch) -> None:
    git_env.setenv("DAGSTER_CLOUD_GIT_URL", "git@github.com:acme/data-platform.git")
    git_env.setenv("DAGSTER_CLOUD_GIT_SHA", "0f1e2d")
    source = Path(__file__).read_text().splitlines()
    decorator_line = source.index("def defined_here() -> None: ...")  # 0-based `def` = 1-based `@`

    linked = with_code_references(dg.Definitions(assets=[defined_here]), PROJECT_ROOT)

    path = Path(__file__).resolve().relative_to(PROJECT_ROOT).as_posix()
    assert _urls(linked) == {
        "defined_here": [
            f"https://github.com/acme/data-platform/blob/0f1e2d/{path}#L{decorator_line}"
        ]
    }


def test_keeps_references_outside_the_repository_local(git_env: pytest.MonkeyPatch) -> None:
    git_env.setenv("DATA_PLATFORM_GIT_URL", "https://github.com/acme/dp")
    git_env.setenv("GIT_SHA", "abc123")
    elsewhere = dg.LocalFileCodeReference(file_path="/opt/vendor/assets.py", line_number=9)
    spec = dg.AssetSpec(
        "vendored",
        metadata={
            source_code.CODE_REFERENCES_KEY: dg.CodeReferencesMetadataValue(
                code_references=[elsewhere]
            )
        },
    )

    linked = with_code_references(dg.Definitions(assets=[spec]), PROJECT_ROOT)

    assert _references(linked) == {"vendored": [elsewhere]}


def test_consults_git_once_whatever_the_number_of_assets(
    git_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    run = subprocess.run

    def counting_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        calls.append(args)
        return run(args, **kwargs)

    git_env.setattr(source_code.subprocess, "run", counting_run)
    assets = [dg.AssetSpec(f"table_{n}") for n in range(50)]

    @dg.multi_asset(specs=[dg.AssetSpec(f"part_{n}") for n in range(50)])
    def parts() -> Iterator[dg.MaterializeResult]:
        yield from ()

    with_code_references(dg.Definitions(assets=[*assets, parts]), tmp_path)

    assert len(calls) <= 2


@pytest.mark.parametrize(
    "failure",
    [
        OSError("git: not found"),
        subprocess.TimeoutExpired(cmd="git", timeout=5),
    ],
)
def test_unknown_when_git_fails(
    git_env: pytest.MonkeyPatch, tmp_path: Path, failure: Exception
) -> None:
    def failing_run(*args: object, **kwargs: object) -> None:
        raise failure

    git_env.setattr(source_code.subprocess, "run", failing_run)

    assert get_git_context(tmp_path) is None
    assert get_git_context(PROJECT_ROOT) is None


def test_unknown_without_a_browsable_remote(git_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    git_env.setenv("DATA_PLATFORM_GIT_URL", "/srv/git/dp.git")
    git_env.setenv("GIT_SHA", "abc123")

    assert get_git_context(tmp_path) is None


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/acme/dp", "https://github.com/acme/dp"),
        ("https://github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("https://github.com/acme/dp/", "https://github.com/acme/dp"),
        ("  https://github.com/acme/dp.git\n", "https://github.com/acme/dp"),
        ("git@github.com:acme/dp.git", "https://github.com/acme/dp"),
        ("git@github.com:acme/dp", "https://github.com/acme/dp"),
        ("github.com:acme/dp.git", "https://github.com/acme/dp"),
        ("git@GitHub.com:Acme/DP.git", "https://github.com/Acme/DP"),
        ("ssh://git@github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("ssh://git@git.acme.io:2222/data/dp.git", "https://git.acme.io/data/dp"),
        ("git+ssh://git@github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("git://github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("https://user:s3cret@github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("https://x-access-token:ghs_abc@github.com/acme/dp", "https://github.com/acme/dp"),
        ("https://oauth2:glpat-xyz@gitlab.com/group/sub/dp.git", "https://gitlab.com/group/sub/dp"),
        ("https://token@github.com/acme/dp.git", "https://github.com/acme/dp"),
        ("https://git.acme.io:8443/data/dp.git", "https://git.acme.io:8443/data/dp"),
        ("http://git.internal/data/dp.git", "http://git.internal/data/dp"),
        ("https://github.com/acme/dp.git?ref=main#readme", "https://github.com/acme/dp"),
        ("/srv/git/dp.git", None),
        ("file:///srv/git/dp.git", None),
        ("../dp.git", None),
        ("https://github.com/", None),
        ("https://github.com:notaport/acme/dp", None),
        ("https://[::1/acme/dp", None),
        ("", None),
    ],
)
def test_browsable_git_url(remote: str, url: str | None) -> None:
    assert browsable_git_url(remote) == url
