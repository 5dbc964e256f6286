"""Fixtures of the rollup tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from data_platform.lib import warehouse


@pytest.fixture(autouse=True)
def _close_warehouse_pools() -> Iterator[None]:
    """Close the pools runs opened, so databases and servers shut down without waiting."""
    yield
    for pool in list(warehouse._POOLS.values()):
        pool.close()
