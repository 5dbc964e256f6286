"""The platform's defs-folder loader: Dagster's, fast at catalogue scale, naming duplicates.

- With the Dagster shims on (`data_platform/utils/dagster_shims/`, the default), the folder
  loads in time linear in the number of component files (`component_tree.load_from_defs_folder`);
  with them off, through Dagster's own `dg.load_from_defs_folder`. Both give the same
  definitions (`data_platform_tests/utils/test_defs_folder.py`).
- The cyclic garbage collector rescans the growing heap while the definitions are built;
  `load_defs_folder` pauses it for the build, with either loader.
- Two components materializing one asset key fail naming both files, with either loader.
"""

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from data_platform.utils.dagster_shims import component_tree, switch
from data_platform.utils.source_code import CODE_REFERENCES_KEY


def load_defs_folder(path_within_project: Path) -> dg.Definitions:
    """`dg.load_from_defs_folder`, through the shims when they are on, duplicates named by file."""
    with cyclic_gc_paused():
        if switch.active():
            defs = component_tree.load_from_defs_folder(path_within_project)
        else:
            defs = dg.load_from_defs_folder(path_within_project=path_within_project)
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
