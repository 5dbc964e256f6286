"""Dagster's resolution of a component's YAML attributes, without recompiling or re-deriving.

- Templates: Dagster resolves every string of a component's YAML by compiling it as a Jinja
  template (`NativeTemplate(value).render(...)`), even `inverter` or `15 minutes`: that compile
  is most of the cost of loading a component. Resolution here renders the same values to the
  same results, but renders plain text (no `{`, so no Jinja syntax) the way Jinja would without
  compiling it, and compiles each templated string once per process. Failures are handed back to
  Dagster's own resolution so its error messages are unchanged.
- Fields: Dagster's `resolve_fields` works out each field's resolver from the class's type hints
  (and dumps the model once per field) every time a block is resolved; `resolve_fields_cached`
  works them out once per class, then resolves exactly as Dagster does.
"""

import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from unittest import mock

import dagster as dg
from dagster.components.resolved import base as resolved_base
from dagster.components.resolved.context import ResolutionContext
from jinja2 import Undefined
from jinja2.nativetypes import NativeTemplate, native_concat
from pydantic import BaseModel

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


@contextmanager
def cached_resolution(context: dg.ComponentLoadContext) -> Iterator[dg.ComponentLoadContext]:
    """`context` resolving with the caches above, for one `Component.load`."""
    resolution = context.resolution_context
    cached = CachedTemplateResolutionContext(
        scope=resolution.scope,
        path=resolution.path,
        source_position_tree=resolution.source_position_tree,
        stash=resolution.stash,
    )
    with mock.patch.object(resolved_base, "resolve_fields", resolve_fields_cached):
        yield dataclasses.replace(context, resolution_context=cached)
