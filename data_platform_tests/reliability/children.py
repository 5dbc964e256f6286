"""Work the reliability tests run in child processes (spawned: a fresh interpreter each)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
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


@contextmanager
def sampled_peak_rss(interval_s: float = 0.01) -> Iterator[dict[str, int]]:
    """The highest resident set size (KiB) of this process seen while the block runs.

    Sampled, because `ru_maxrss` keeps the peak of the whole process life, which importing
    and loading definitions may set before the work being measured starts.
    """
    process = psutil.Process()
    seen = {"before_kib": process.memory_info().rss // 1024, "peak_kib": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak_kib"] = max(seen["peak_kib"], process.memory_info().rss // 1024)
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join(timeout=5)


def backfill_peak_rss(
    attributes: dict[str, Any], warehouse_url: str, partition_range: tuple[str, str]
) -> dict[str, Any]:
    """Run a partition range as one backfill run; what it did and the process's RSS (KiB)."""
    with load_yaml_component(attributes) as (_component, defs), sampled_peak_rss() as rss:
        result = run_assets(
            defs, warehouse_url, partition_range=partition_range, raise_on_error=False
        )
    key = dg.AssetKey([attributes["name"], "m"])
    return {
        **rss,
        "success": result.success,
        "partitions": len(
            {e.partition for e in result.get_asset_materialization_events() if e.asset_key == key}
        ),
        "reconciled": [
            c.passed
            for c in result.get_asset_check_evaluations()
            if c.check_name == "reconciliation"
        ],
    }


def partition_peak_rss(
    attributes: dict[str, Any], warehouse_url: str, partition_key: str
) -> dict[str, Any]:
    """Run one partition; whether it succeeded and the process's RSS before and during it."""
    with load_yaml_component(attributes) as (_component, defs), sampled_peak_rss() as rss:
        result = run_assets(defs, warehouse_url, partition_key=partition_key, raise_on_error=False)
    return {**rss, "success": result.success}
