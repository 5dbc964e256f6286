"""How the platform's components read their YAML attributes.

- Shapes: Dagster accepts a string wherever YAML may hold a template, so a string where a list
  or a block of settings belongs (`measurements: inverter`, or a template that renders to one)
  would reach its resolver and fail there with an AttributeError; it is refused first, naming
  the file, the field and the fix. This is the platform's own validation: it holds with the
  Dagster shims on or off.
- Paths and locations: `yaml_path_text` and `yaml_location` name a YAML field, and its file and
  line, in the components' error messages.
- Resolution: with the shims on (`data_platform/utils/dagster_shims/`), attributes resolve with
  cached templates and per-class field resolvers (`dagster_shims.resolution`); with them off,
  exactly as Dagster resolves them.
"""

import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self, Union, get_args, get_origin

import dagster as dg
from dagster.components.resolved.context import ResolutionContext
from pydantic import BaseModel

from data_platform.lib.timing.errors import YamlPath, yaml_path_text
from data_platform.utils.dagster_shims import switch
from data_platform.utils.dagster_shims.resolution import cached_resolution


def yaml_location(context: dg.ComponentLoadContext, path: YamlPath, problem: str) -> str | None:
    """`file:line - attributes.x.y` plus a snippet of defs.yaml, when the YAML is known."""
    tree = context.resolution_context.source_position_tree
    if tree is None:
        return None
    try:
        error = tree.source_error(
            yaml_path=["attributes", *path], inline_error_message=problem, value_error=True
        )
    except Exception:
        return None  # no position for this path: the message alone still names the field
    return f"{error.file_name}:{error.start_line_no} - {error.location}\n{error.snippet}"


FIXES = {
    "list": "write a YAML list: one `- item` per line under the key, or `[a, b]`",
    "block": "write a block of settings: `key: value` lines indented under the key",
    "mapping": "write a mapping: `key: value` lines indented under the key, or `{a: b}`",
}


class YamlShapeError(ValueError):
    """A plain string where the component's schema wants a list, mapping or block."""


def expected_shape(annotation: Any) -> tuple[str, Any] | None:
    """`("list", item type)`, `("mapping", None)` or `("block", model)`; None where a string fits."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if any(a is str for a in options):
            return None
        shapes = [expected_shape(a) for a in options]
        return shapes[0] if len(shapes) == 1 else None
    if origin in (list, tuple, set, frozenset, Sequence):
        args = get_args(annotation)
        return ("list", args[0] if args else None)
    if origin in (dict, Mapping):
        return ("mapping", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("block", annotation)
    return None


def misplaced_strings(
    model: type[BaseModel], attributes: Any, path: YamlPath = ()
) -> Iterator[tuple[YamlPath, str, str]]:
    """(path, value, shape) of every string where `model` wants a list, mapping or block."""
    written = getattr(attributes, "model_fields_set", set())  # what the YAML sets
    for name, field in model.model_fields.items():
        if name not in written:
            continue
        value = getattr(attributes, name, None)
        shape = expected_shape(field.annotation)
        if value is None or shape is None:
            continue
        kind, inner = shape
        here = (*path, name)
        if isinstance(value, str):
            yield here, value, kind
        elif kind == "block" and isinstance(value, BaseModel):
            yield from misplaced_strings(inner, value, here)
        elif kind == "list" and isinstance(value, list | tuple):
            item = expected_shape(inner)
            if item and item[0] == "block":
                for i, element in enumerate(value):
                    if isinstance(element, str):
                        yield (*here, i), element, "block"
                    elif isinstance(element, BaseModel):
                        yield from misplaced_strings(item[1], element, (*here, i))


SHAPES: dict[str, tuple[type, ...]] = {"list": (list, tuple), "mapping": (dict,), "block": (dict,)}


def _misplaced_problem(value: str, kind: str, field: str, context: ResolutionContext) -> str | None:
    """Why `value` cannot stand where a `kind` belongs; None when it can (or Dagster will say)."""
    a = "an" if kind[0] in "aeiou" else "a"
    if "{" not in value:
        return f"{field} is the string {value!r}; it must be {a} {kind}"
    try:
        rendered = context.resolve_value(value)
    except Exception:
        return None  # Dagster's own resolution reports the template's error, with its line
    if isinstance(rendered, SHAPES[kind]):
        return None
    # the type only: a rendered value may come from a secret in the environment
    return (
        f"{field} is a template that renders to a {type(rendered).__name__}; it must be {a} {kind}"
    )


def refuse_misplaced_strings(
    component: type[BaseModel], attributes: Any, context: dg.ComponentLoadContext
) -> None:
    for path, value, kind in misplaced_strings(component, attributes):
        problem = _misplaced_problem(value, kind, yaml_path_text(path), context.resolution_context)
        if problem is None:
            continue
        message = f"{problem}. Fix: {FIXES[kind]}"
        location = yaml_location(context, path, problem)
        if location:
            message = f"{location}\n{message}"
        raise YamlShapeError(message)


class YamlAttributes:
    """Mixin for a `dg.Resolvable` component: YAML shapes checked, resolved as the shims say."""

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> Self:
        if attributes is not None and issubclass(cls, BaseModel):
            refuse_misplaced_strings(cls, attributes, context)
        if not switch.active():
            return super().load(attributes, context)  # type: ignore[misc]
        with cached_resolution(context) as cached:
            return super().load(attributes, cached)  # type: ignore[misc]
