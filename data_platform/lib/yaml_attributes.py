"""How the platform's components read their YAML attributes.

- Templates: Dagster resolves every string of a component's YAML by compiling it as a Jinja
  template (`NativeTemplate(value).render(...)`), even `inverter` or `15 minutes`: that compile
  is most of the cost of loading a component. Resolution here renders the same values to the
  same results, but renders plain text (no `{`, so no Jinja syntax) the way Jinja would without
  compiling it, and compiles each templated string once per process. Failures are handed back to
  Dagster's own resolution so its error messages are unchanged.
- Shapes: Dagster accepts a string wherever YAML may hold a template, so a string where a list
  or a block of settings belongs (`measurements: inverter`, or a template that renders to one)
  would reach its resolver and fail there with an AttributeError; it is refused first, naming
  the file, the field and the fix.
- Fields: Dagster's `resolve_fields` works out each field's resolver from the class's type hints
  (and dumps the model once per field) every time a block is resolved; `resolve_fields_cached`
  works them out once per class, then resolves exactly as Dagster does.
"""

import dataclasses
import functools
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Self, Union, get_args, get_origin
from unittest import mock

import dagster as dg
from dagster.components.resolved import base as resolved_base
from dagster.components.resolved.context import ResolutionContext
from jinja2 import Undefined
from jinja2.nativetypes import NativeTemplate, native_concat
from pydantic import BaseModel

from data_platform.lib.timing.errors import YamlPath, yaml_path_text

_NEWLINE = re.compile(r"(\r\n|\r|\n)")


def render_plain_text(text: str) -> Any:
    """What `NativeTemplate(text).render()` returns for a string without Jinja syntax.

    Jinja's lexer normalises newlines and drops one trailing newline; the native environment
    then reads the output as a Python literal where it is one (`"12"` -> 12).
    """
    lines = _NEWLINE.split(text)[::2]
    if lines[-1] == "":
        del lines[-1]
    data = "\n".join(lines)
    return native_concat([data]) if data else None


@lru_cache(maxsize=4096)
def compiled_template(source: str) -> NativeTemplate:
    return NativeTemplate(source)


class CachedTemplateResolutionContext(ResolutionContext):
    """Dagster's resolution context, rendering each string as it does, without recompiling."""

    def _resolve_inner_value(self, val: Any) -> Any:
        if not isinstance(val, str) or not val:
            return val
        if "{" not in val:
            return render_plain_text(val)
        try:
            rendered = compiled_template(val).render(**self.scope)
        except Exception:
            rendered = Undefined()
        if isinstance(rendered, Undefined):
            # Let Dagster render it again and raise its own error, naming the YAML line.
            return super()._resolve_inner_value(val)
        return rendered


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    alias: str
    model_field: str
    resolver: dg.Resolver


@functools.cache
def _fields_of(resolved_cls: type) -> tuple[_Field, ...]:
    """Each field of a resolvable class with its resolver: what Dagster derives per call."""
    fields = []
    for name, info in resolved_base._get_annotations(resolved_cls).items():
        resolver = resolved_base._get_resolver(info.type, name)
        alias = info.field_info.alias if info.field_info and info.field_info.alias else name
        fields.append(_Field(name, alias, resolver.model_field_name or name, resolver))
    return tuple(fields)


def resolve_fields_cached(
    model: BaseModel, resolved_cls: type, context: ResolutionContext
) -> Mapping[str, Any]:
    """Dagster's `resolve_fields` (same fields, order, filtering and resolvers), cached per class."""
    written = model.model_dump(exclude_unset=True)
    return {
        field.alias: field.resolver.execute(context=context, model=model, field_name=field.name)
        for field in _fields_of(resolved_cls)
        if field.model_field in written
        and getattr(model, field.model_field) != resolved_base._Unset
    }


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
    """Mixin for a `dg.Resolvable` component: YAML shapes checked, resolved with the caches above."""

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> Self:
        if attributes is not None and issubclass(cls, BaseModel):
            refuse_misplaced_strings(cls, attributes, context)
        resolution = context.resolution_context
        cached = CachedTemplateResolutionContext(
            scope=resolution.scope,
            path=resolution.path,
            source_position_tree=resolution.source_position_tree,
            stash=resolution.stash,
        )
        with mock.patch.object(resolved_base, "resolve_fields", resolve_fields_cached):
            return super().load(  # type: ignore[misc]
                attributes, dataclasses.replace(context, resolution_context=cached)
            )
