"""The Dagster internals the platform's loader builds on are the ones it was written against.

`data_platform/utils/defs_folder.py`, `utils/yaml_positions.py` and `lib/yaml_attributes.py`
override or stand in for a few private Dagster functions to make catalogue-scale loading
linear and fast. Equivalence tests compare their results with Dagster's, but only on the inputs
they try; this test fails as soon as a Dagster upgrade changes one of those functions, so that
someone reads the new version before the platform relies on it again. After checking (and
adapting the platform's counterpart, or dropping it if Dagster fixed the cost upstream), update
the fingerprint here.
"""

import hashlib
import inspect
from collections.abc import Callable

import dagster_shared.yaml_utils
import pytest
from dagster.components.component.component import Component
from dagster.components.core import decl
from dagster.components.core.component_tree import ComponentTree
from dagster.components.resolved import base
from dagster.components.resolved.context import ResolutionContext

# function -> (fingerprint of its source, the platform code that depends on it)
PINNED: dict[Callable[..., object], tuple[str, str]] = {
    ComponentTree._component_decl_tree: ("ae084f7af7180441", "utils/defs_folder.py"),
    ComponentTree._load_component_at_loc: ("2feeae3b21a6da18", "utils/defs_folder.py"),
    ComponentTree._get_filesystem_decl: ("304d0f4365080b36", "utils/defs_folder.py"),
    decl.build_component_decl_from_yaml_file: ("0bc3d510f5fb7cb3", "utils/defs_folder.py"),
    dagster_shared.yaml_utils.parse_yamls_with_source_position: (
        "f6f4b5f8db98ae78",
        "utils/yaml_positions.py",
    ),
    ResolutionContext._resolve_inner_value: ("2daa2feab0be8822", "lib/yaml_attributes.py"),
    base.resolve_fields: ("ecf917558a06d919", "lib/yaml_attributes.py"),
    Component.load: ("c58d41b09eb4c90c", "lib/yaml_attributes.py"),
}


def fingerprint(function: Callable[..., object]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


@pytest.mark.parametrize("function", PINNED, ids=lambda f: f.__qualname__)
def test_dagster_function_is_unchanged(function: Callable[..., object]):
    expected, dependent = PINNED[function]
    assert fingerprint(function) == expected, (
        f"Dagster's {function.__module__}.{function.__qualname__} changed: read the new version, "
        f"adapt data_platform/{dependent} (or drop its workaround), then pin "
        f"{fingerprint(function)!r} here"
    )
