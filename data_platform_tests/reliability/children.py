"""Work the reliability tests run in child processes (spawned: a fresh interpreter each)."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from data_platform_tests.helpers import load_yaml_component, run_assets
from data_platform_tests.reliability.support import on_stream


def run_partition_slowly(
    attributes: dict[str, Any],
    warehouse_url: str,
    partition_key: str,
    dagster_home: str,
    marker: str,
    after_batches: int,
    pause_s: float,
) -> None:
    """Materialize one partition on a persistent instance; once the window's stream has
    yielded `after_batches` batches, touch `marker` and slow the stream down."""
    instance = dg.DagsterInstance.from_config(dagster_home)
    with pytest.MonkeyPatch.context() as patch:
        on_stream(patch, after_batches, Path(marker).touch, pause_s=pause_s)
        with load_yaml_component(attributes) as (_component, defs):
            run_assets(defs, warehouse_url, partition_key=partition_key, instance=instance)


def backfill_peak_rss(
    attributes: dict[str, Any], warehouse_url: str, partition_range: tuple[str, str]
) -> tuple[bool, int]:
    """Run a partition range as one backfill run; (success, peak RSS of this process in KiB)."""
    with load_yaml_component(attributes) as (_component, defs):
        result = run_assets(
            defs, warehouse_url, partition_range=partition_range, raise_on_error=False
        )
    return result.success, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def partition_peak_rss(
    attributes: dict[str, Any], warehouse_url: str, partition_key: str
) -> tuple[bool, int, int]:
    """Run one partition; (success, RSS before the run, peak RSS after it), both in KiB."""
    with load_yaml_component(attributes) as (_component, defs):
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = run_assets(defs, warehouse_url, partition_key=partition_key, raise_on_error=False)
    return result.success, baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
