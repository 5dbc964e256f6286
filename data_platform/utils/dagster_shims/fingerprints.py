"""The private Dagster functions the shims stand in for, as the shims were written against them.

Each shim reproduces or wraps a Dagster function it cannot call through a public API. The
fingerprint is a hash of that function's source in the Dagster release the lock pins: when an
installed Dagster differs, the shim may no longer do what Dagster does, so `switch.active`
turns every shim off and loading goes through Dagster's own code.
"""

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class Pin:
    fingerprint: str
    shim: str  # the module of this package that depends on the function


_LOAD_CONTEXT = "dagster._core.definitions.definitions_load_context:DefinitionsLoadContext"

# "module:qualified name" -> what the shims were written against (Dagster 1.13.27)
PINNED: dict[str, Pin] = {
    "dagster.components.core.component_tree:ComponentTree._component_decl_tree": Pin(
        "ae084f7af7180441", "component_tree.py"
    ),
    "dagster.components.core.component_tree:ComponentTree._load_component_at_loc": Pin(
        "2feeae3b21a6da18", "component_tree.py"
    ),
    "dagster.components.core.component_tree:ComponentTree._get_filesystem_decl": Pin(
        "304d0f4365080b36", "component_tree.py"
    ),
    "dagster.components.core.decl:build_component_decl_from_yaml_file": Pin(
        "0bc3d510f5fb7cb3", "component_tree.py"
    ),
    "dagster_shared.yaml_utils:parse_yamls_with_source_position": Pin(
        "f6f4b5f8db98ae78", "yaml_positions.py"
    ),
    "dagster.components.resolved.context:ResolutionContext._resolve_inner_value": Pin(
        "2daa2feab0be8822", "resolution.py"
    ),
    "dagster.components.resolved.base:resolve_fields": Pin("ecf917558a06d919", "resolution.py"),
    "dagster.components.component.component:Component.load": Pin(
        "c58d41b09eb4c90c", "resolution.py"
    ),
    f"{_LOAD_CONTEXT}.get": Pin("757d1e508c038530", "initial_load.py"),
    f"{_LOAD_CONTEXT}.state_keys_with_prefix": Pin("6cd38d5204983461", "initial_load.py"),
    f"{_LOAD_CONTEXT}.get_pending_reconstruction_metadata": Pin(
        "957896fdf466a22b", "initial_load.py"
    ),
}


def fingerprint(function: Callable[..., object]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def installed(name: str) -> Callable[..., object]:
    """The function `name` ("module:Class.method") names in the installed Dagster."""
    module_name, qualified_name = name.split(":")
    found: object = import_module(module_name)
    for part in qualified_name.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{name} is not a function")
    return found


def installed_fingerprint(name: str) -> str | None:
    """The fingerprint of the installed function; None when it is gone or has no source."""
    try:
        return fingerprint(installed(name))
    except (ImportError, AttributeError, TypeError, OSError):
        return None


def drifted() -> dict[str, str | None]:
    """Each pinned function whose installed version differs: name -> its fingerprint now."""
    now = {name: installed_fingerprint(name) for name in PINNED}
    return {name: value for name, value in now.items() if value != PINNED[name].fingerprint}
