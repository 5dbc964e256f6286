"""The platform's defs-folder loader: the same definitions as Dagster's, in linear time, once.

With the Dagster shims on, the folder loads through `LinearComponentTree` and a code server's
start builds it once; with them off, through Dagster's own loader. Either way the definitions
are the same, and two components making one asset key are refused naming both files."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

from data_platform.utils.dagster_shims import yaml_positions
from data_platform.utils.dagster_shims.component_tree import LinearComponentTree
from data_platform.utils.dagster_shims.initial_load import reuse_initial_load
from data_platform.utils.dagster_shims.switch import SWITCH
from data_platform.utils.defs_folder import load_defs_folder, refuse_duplicate_assets
from data_platform_tests.helpers import describe_definitions

SOURCES = 6

INGEST = """\
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers
attributes:
  name: {name}
  files: {{paths: [".data/{name}.lp.gz"]}}
  measurements: [{{name: inverter}}, {{name: meter}}]
  target: {{schema: "{{{{ schema_for('raw') }}}}"}}
  partitions: {{start: "2025-01-01", granularity: hourly}}
"""

ROLLUPS = """\
type: data_platform.lib.TimescaleAggregateComponent
attributes:
  source: {{schema: raw, table: influx_hist, assets: [{name}/inverter, {name}/meter]}}
  target: {{schema: rollups, name_prefix: {name}}}
  partitions: {{start: "2025-01-01", granularity: hourly}}
  buckets: [{{width: 1 hour}}, {{width: 1 day}}]
"""


@pytest.fixture
def catalogue() -> Iterator[DefsFolderSandbox]:
    """A defs folder of generated sources: ingest + rollups each, one of them the old file name."""
    with create_defs_folder_sandbox() as sandbox:
        for i in range(SOURCES):
            name = f"site_{i}"
            for folder, template in (("ingest", INGEST), ("rollups", ROLLUPS)):
                path = sandbox.defs_folder_path / name / folder
                path.mkdir(parents=True)
                file_name = "component.yaml" if (i, folder) == (0, "rollups") else "defs.yaml"
                (path / file_name).write_text(template.format(name=name))
        yield sandbox


@pytest.fixture(params=["on", "off"])
def shims(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SWITCH, request.param)
    return request.param


def build(sandbox: DefsFolderSandbox, tree_class: type[dg.ComponentTree] | None) -> dg.Definitions:
    """The sandbox's definitions from `tree_class`, or from the platform's loader when None."""
    src = str(sandbox.project_root / "src")
    module_name = f"{sandbox.project_name}.defs"
    sys.path.insert(0, src)
    try:
        if tree_class is None:
            return load_defs_folder(sandbox.defs_folder_path)
        tree = tree_class(
            defs_module=importlib.import_module(module_name), project_root=sandbox.project_root
        )
        return tree.build_defs()
    finally:
        sys.path.remove(src)
        for name in [n for n in sys.modules if n.startswith(sandbox.project_name)]:
            del sys.modules[name]


def test_same_definitions_as_dagsters_loader(catalogue: DefsFolderSandbox):
    ours = describe_definitions(build(catalogue, LinearComponentTree))
    assert len(ours["assets"]) == SOURCES * (3 + 2)  # registry + 2 measurements, 2 rollups
    assert ours["checks"]
    assert ours == describe_definitions(build(catalogue, dg.ComponentTree))


def test_same_definitions_with_the_shims_on_and_off(catalogue, monkeypatch):
    on = describe_definitions(build(catalogue, None))
    assert len(on["assets"]) == SOURCES * (3 + 2)
    monkeypatch.setenv(SWITCH, "off")
    assert describe_definitions(build(catalogue, None)) == on


def test_project_definitions_are_the_same_with_the_shims_on_and_off(monkeypatch):
    from data_platform.definitions import defs as project_defs

    on = describe_definitions(load_in(initialization(), project_defs))
    assert on["assets"]
    monkeypatch.setenv(SWITCH, "off")
    assert describe_definitions(load_in(initialization(), project_defs)) == on


def count_tree_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    walks: list[int] = []
    original = dg.ComponentTree._component_decl_tree

    def counted(self: dg.ComponentTree) -> Any:
        walks.append(1)
        return original(self)

    monkeypatch.setattr(dg.ComponentTree, "_component_decl_tree", counted)
    return walks


def test_declaration_tree_is_walked_once_not_per_component(catalogue, monkeypatch):
    walks = count_tree_walks(monkeypatch)
    build(catalogue, dg.ComponentTree)
    per_component = len(walks)
    assert per_component > 2 * SOURCES  # Dagster's own loader: a walk per component location
    walks.clear()
    build(catalogue, LinearComponentTree)
    assert len(walks) == 1


def test_yaml_files_are_read_with_libyaml(catalogue, monkeypatch):
    reads: list[str] = []
    slow_reads: list[str] = []
    fast, slow = yaml_positions.parse, yaml_positions.parse_with_python_parser
    monkeypatch.setattr(
        yaml_positions, "parse", lambda src, name, *a: reads.append(name) or fast(src, name, *a)
    )
    monkeypatch.setattr(
        yaml_positions,
        "parse_with_python_parser",
        lambda src, name, *a: slow_reads.append(name) or slow(src, name, *a),
    )
    build(catalogue, LinearComponentTree)
    assert len(reads) == 2 * SOURCES
    assert slow_reads == []


def test_a_broken_file_fails_as_with_dagsters_loader(catalogue: DefsFolderSandbox, shims: str):
    (catalogue.defs_folder_path / "site_1" / "ingest" / "defs.yaml").write_text("attributes: [\n")
    errors = []
    for tree_class in (dg.ComponentTree, LinearComponentTree, None):
        with pytest.raises(Exception) as raised:
            build(catalogue, tree_class)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] == errors[2]
    assert "site_1/ingest/defs.yaml" in errors[1]


# -- one build per code-server start -------------------------------------------------------------


class Loads:
    def __init__(self) -> None:
        self.count = 0
        self.record_metadata = False

    def __call__(self) -> dg.Definitions:
        self.count += 1
        if self.record_metadata:
            DefinitionsLoadContext.get().add_to_pending_reconstruction_metadata("k", "v")
        return dg.Definitions(assets=[dg.AssetSpec(f"built_{self.count}")])


def initialization() -> DefinitionsLoadContext:
    return DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)


def reconstruction(metadata: dict[str, Any] | None = None) -> DefinitionsLoadContext:
    from dagster._core.definitions.repository_definition import RepositoryLoadData

    data = RepositoryLoadData(cacheable_asset_data={}, reconstruction_metadata=metadata or {})
    return DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION, repository_load_data=data)


def load_in(context: DefinitionsLoadContext, defs: Any) -> dg.Definitions:
    with DefinitionsLoadContext.scoped(context):
        return defs()


def test_reconstruction_right_after_initialization_reuses_the_build():
    loads = Loads()
    defs = reuse_initial_load(loads)
    first = load_in(initialization(), defs)
    assert load_in(reconstruction(), defs) is first
    assert loads.count == 1
    # used once: a later reconstruction builds afresh
    assert load_in(reconstruction(), defs) is not first
    assert loads.count == 2


def test_every_other_sequence_builds_afresh(monkeypatch):
    loads = Loads()
    defs = reuse_initial_load(loads)
    load_in(initialization(), defs)
    load_in(initialization(), defs)
    assert loads.count == 2

    load_in(initialization(), defs)
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://changed/db")
    load_in(reconstruction(), defs)
    assert loads.count == 4

    load_in(initialization(), defs)
    load_in(reconstruction({"key": "value"}), defs)
    assert loads.count == 6

    loads.record_metadata = True
    load_in(initialization(), defs)
    load_in(reconstruction(), defs)
    assert loads.count == 8


CODE_LOCATION = """\
import dagster as dg
from data_platform.utils.dagster_shims.initial_load import reuse_initial_load

BUILDS = []

def build():
    BUILDS.append(1)
    return dg.Definitions(assets=[dg.AssetSpec("only")])

defs = dg.definitions(reuse_initial_load(build) if {reuse} else build)
"""


@pytest.mark.parametrize("reuse, builds", [(True, 1), (False, 2)])
def test_a_code_location_starts_with_one_build(tmp_path: Path, reuse: bool, builds: int):
    module = tmp_path / f"location_{reuse}.py"
    module.write_text(textwrap.dedent(CODE_LOCATION.format(reuse=reuse)))
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            python_file=str(module), working_directory=str(tmp_path)
        ),
        location_name="catalogue",
    )
    previous = DefinitionsLoadContext._instance
    try:
        with dg.instance_for_test() as instance, origin.create_location(instance) as location:
            repository = next(iter(location.get_repositories().values()))
            assert [n.asset_key.to_user_string() for n in repository.get_asset_node_snaps()] == [
                "only"
            ]
            assert len(sys.modules[f"location_{reuse}"].BUILDS) == builds
    finally:
        DefinitionsLoadContext.set(previous)  # type: ignore[arg-type]
        sys.modules.pop(f"location_{reuse}", None)


def test_project_definitions_use_the_platform_loader(monkeypatch):
    from data_platform.definitions import defs as project_defs

    walks = count_tree_walks(monkeypatch)
    definitions = load_in(initialization(), project_defs)
    assert len(walks) == 1  # LinearComponentTree: one walk for the whole defs folder
    assert load_in(reconstruction(), project_defs) is definitions  # reused, not rebuilt
    assert len(walks) == 1


def test_with_the_shims_off_the_project_loads_through_dagsters_own_loader(monkeypatch):
    from data_platform.definitions import defs as project_defs

    monkeypatch.setenv(SWITCH, "off")
    walks = count_tree_walks(monkeypatch)
    definitions = load_in(initialization(), project_defs)
    assert len(walks) > 2  # Dagster's own loader: a walk per component location
    assert load_in(reconstruction(), project_defs) is not definitions  # built again


def test_an_asset_key_in_two_files_names_both(catalogue: DefsFolderSandbox, shims: str):
    twin = catalogue.defs_folder_path / "site_9" / "ingest"
    twin.mkdir(parents=True)
    (twin / "defs.yaml").write_text(INGEST.format(name="site_1"))
    with pytest.raises(dg.DagsterInvalidDefinitionError) as raised:
        build(catalogue, None)  # the platform's loader, with the shims on or off
    message = str(raised.value)
    assert "3 asset key(s) are materialized by more than one component" in message
    for folder in ("site_1", "site_9"):
        assert f"{folder}/ingest/defs.yaml:" in message
    assert "site_1/inverter: defined in" in message
    assert "Fix: give each source its own `name`" in message


def test_distinct_sources_pass_the_duplicate_check(catalogue: DefsFolderSandbox, shims: str):
    refuse_duplicate_assets(build(catalogue, LinearComponentTree))
    assert build(catalogue, None).assets
