"""Dagster's defs-folder loader, walking the declaration tree once instead of once per component.

`ComponentTree` looks up each component's declaration by rebuilding the whole declaration tree
(`_component_decl_tree`) once per component it loads: the walk grows with the square of the
number of `defs.yaml` files (upstream: dagster-io/dagster#34068). `LinearComponentTree` records
every declaration the first time one is missing, which is what Dagster caches per location
anyway once that component is loaded, so each later lookup is a dictionary hit. It also reads
each `defs.yaml` with Dagster's own YAML loader on libyaml (`yaml_positions`).

Same declarations, same components, same definitions:
`data_platform_tests/utils/test_defs_folder.py` compares them with Dagster's own loader.
"""

from pathlib import Path
from unittest import mock

import dagster as dg
from dagster.components.core import decl
from dagster.components.core.decl import ComponentDecl
from dagster.components.core.defs_module import ComponentLoc

from data_platform.utils.dagster_shims import yaml_positions


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


def load_from_defs_folder(path_within_project: Path) -> dg.Definitions:
    """`dg.load_from_defs_folder`, in time linear in the number of component files."""
    return LinearComponentTree.for_project(path_within_project=path_within_project).build_defs()
