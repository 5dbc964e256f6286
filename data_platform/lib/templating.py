"""YAML attribute resolution without compiling a Jinja template per string.

Dagster resolves every string of a component's YAML by compiling it as a Jinja template
(`NativeTemplate(value).render(...)`), even `inverter` or `15 minutes`: that compile is most of
the cost of loading a component. `CachedTemplates.load` resolves with a context that renders the
same values to the same results, but renders plain text (no `{`, so no Jinja syntax) the way
Jinja would without compiling it, and compiles each templated string once per process.
Failures are handed back to Dagster's own resolution so its error messages are unchanged.
"""

import dataclasses
import re
from functools import lru_cache
from typing import Any, Self

import dagster as dg
from dagster.components.resolved.context import ResolutionContext
from jinja2 import Undefined
from jinja2.nativetypes import NativeTemplate, native_concat

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


class CachedTemplates:
    """Mixin for a `dg.Resolvable` component: resolve its YAML with cached templates."""

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> Self:
        resolution = context.resolution_context
        cached = CachedTemplateResolutionContext(
            scope=resolution.scope,
            path=resolution.path,
            source_position_tree=resolution.source_position_tree,
            stash=resolution.stash,
        )
        return super().load(  # type: ignore[misc]
            attributes, dataclasses.replace(context, resolution_context=cached)
        )
