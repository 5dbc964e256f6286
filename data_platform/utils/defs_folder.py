"""Load the defs folder in time linear in the number of component files, and only once.

What Dagster 1.13's loader costs at catalogue scale (`just bench-load`), and what is done here:

- `ComponentTree` looks up each component's declaration by rebuilding the whole declaration
  tree (`_component_decl_tree`) once per component it loads: the walk grows with the square of
  the number of `defs.yaml` files (upstream: dagster-io/dagster#34068). `LinearComponentTree`
  records every declaration the first time one is missing, which is what Dagster caches per
  location anyway once that component is loaded, so each later lookup is a dictionary hit.
- Each `defs.yaml` is read with PyYAML's pure-Python parser; `LinearComponentTree` reads the
  folder with the same loader on libyaml (`yaml_positions`).
- The cyclic garbage collector rescans the growing heap while the definitions are built;
  `load_defs_folder` pauses it for the build.
- A code server builds the definitions twice as it starts; `reuse_initial_load` keeps the first.

Nothing else about loading changes: same declarations, same components, same definitions
(`data_platform_tests/utils/test_defs_folder.py` compares them with Dagster's own loader). When
a Dagster release fixes the first three, `dg.load_from_defs_folder` can take this one's place.
One thing is added: two components materializing one asset key fail naming both files.
"""

import functools
import gc
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster.components.core import decl
from dagster.components.core.decl import ComponentDecl
from dagster.components.core.defs_module import ComponentLoc

from data_platform.utils import yaml_positions
from data_platform.utils.source_code import CODE_REFERENCES_KEY


class LinearComponentTree(dg.ComponentTree):
    """A `ComponentTree` whose declaration lookups do not walk the tree per component."""

    def _get_filesystem_decl(self) -> ComponentDecl:
        with mock.patch.object(decl, "parse_yamls_with_source_position", yaml_positions.parse):
            return super()._get_filesystem_decl()

    def _load_component_at_loc(self, resolved_loc: ComponentLoc) -> None:
        if self.state_tracker.get_cache_data(resolved_loc).component_decl is None:
            self._record_declarations()
        super()._load_component_at_loc(resolved_loc)

    def _record_declarations(self) -> None:
        """One walk of the declaration tree, cached per location like a loaded component's."""
        for loc, declaration in self._component_decl_tree().items():
            if self.state_tracker.get_cache_data(loc).component_decl is None:
                self.state_tracker.set_cache_data(loc, component_decl=declaration)


def load_defs_folder(path_within_project: Path) -> dg.Definitions:
    """`dg.load_from_defs_folder`, linear in the number of files, duplicates named by file."""
    with cyclic_gc_paused():
        tree = LinearComponentTree.for_project(path_within_project=path_within_project)
        defs = tree.build_defs()
    refuse_duplicate_assets(defs)
    return defs


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the definitions are built.

    Building allocates a few hundred thousand objects per thousand sources, nearly all kept, so
    every collection the allocations trigger rescans a growing heap for the little garbage there
    is: about a third of the build time. Reference counting still frees everything acyclic; the
    collector runs again as soon as the build is done.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _defined_at(spec: dg.AssetSpec) -> str:
    references = spec.metadata.get(CODE_REFERENCES_KEY)
    if isinstance(references, dg.CodeReferencesMetadataValue):
        for reference in references.code_references:
            if isinstance(reference, dg.LocalFileCodeReference):
                line = f":{reference.line_number}" if reference.line_number else ""
                return f"{reference.file_path}{line}"
    return "a definition without a source file"


def refuse_duplicate_assets(defs: dg.Definitions) -> None:
    """Two components materializing one asset key: name both files and the fix.

    Dagster would refuse the merged definitions later with "Duplicate asset key" and no file;
    the usual cause is a copied defs.yaml whose source `name` (or rollup `name_prefix`) was kept.
    """
    sites: dict[dg.AssetKey, list[str]] = defaultdict(list)
    for assets_def in defs.assets or []:
        if isinstance(assets_def, dg.AssetsDefinition) and assets_def.is_executable:
            for spec in assets_def.specs:
                sites[spec.key].append(_defined_at(spec))
    duplicates = {key: places for key, places in sites.items() if len(places) > 1}
    if not duplicates:
        return
    lines = [
        f"  {key.to_user_string()}: defined in " + " and ".join(sorted(places))
        for key, places in sorted(duplicates.items(), key=lambda item: item[0].to_user_string())
    ]
    raise dg.DagsterInvalidDefinitionError(
        f"{len(duplicates)} asset key(s) are materialized by more than one component:\n"
        + "\n".join(lines)
        + "\nFix: give each source its own `name` (InfluxIngestComponent) and each rollup family "
        "its own `target.name_prefix` (TimescaleAggregateComponent), or set a distinct "
        "`asset_attributes.key_prefix`."
    )


@dataclass
class _InitialLoad:
    definitions: dg.Definitions
    environ: dict[str, str]


def reuse_initial_load(load: Callable[[], dg.Definitions]) -> Callable[[], dg.Definitions]:
    """Build the definitions once when a code server starts, not twice.

    A code server calls the `@dg.definitions` function twice as it starts: once to find the
    definitions (INITIALIZATION), then again to reconstruct them (RECONSTRUCTION) from the
    reconstruction metadata and defs state the first call recorded, so that a definition that
    fetched something expensive can rebuild from the record instead. Definitions that record
    neither come out of both calls the same, so the second call returns the first result, when
    the environment has not changed in between. Any other call builds afresh.
    """
    initial: _InitialLoad | None = None

    @functools.wraps(load)
    def wrapper() -> dg.Definitions:
        nonlocal initial
        context = DefinitionsLoadContext.get()
        previous, initial = initial, None
        if context.load_type == DefinitionsLoadType.INITIALIZATION:
            definitions = load()
            if _records_nothing(context):
                initial = _InitialLoad(definitions, dict(os.environ))
            return definitions
        if previous and _records_nothing(context) and previous.environ == dict(os.environ):
            return previous.definitions
        return load()

    return wrapper


def _records_nothing(context: DefinitionsLoadContext) -> bool:
    """No reconstruction metadata and no defs state: nothing a second build could read."""
    if context.state_keys_with_prefix(""):
        return False
    if context.load_type == DefinitionsLoadType.INITIALIZATION:
        return not context.get_pending_reconstruction_metadata()
    return not context.reconstruction_metadata
