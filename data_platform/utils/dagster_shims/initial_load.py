"""A code server's start builds the definitions once, not twice."""

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

from data_platform.utils.dagster_shims import switch


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
    the environment has not changed in between. Any other call builds afresh, and so does every
    call with the shims off.
    """
    initial: _InitialLoad | None = None

    @functools.wraps(load)
    def wrapper() -> dg.Definitions:
        nonlocal initial
        previous, initial = initial, None
        if not switch.active():
            return load()
        context = DefinitionsLoadContext.get()
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
