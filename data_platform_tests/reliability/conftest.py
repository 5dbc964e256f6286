"""Servers of the reliability tests that a test may kill, restart or configure on its own.

The session's `influxd` and `postgres` fixtures are shared by every test; faults are injected
into these private ones instead.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_platform.lib.warehouse import close_pools
from data_platform.utils.local_servers import LocalInfluxd, LocalPostgres, start_influxd


@pytest.fixture
def private_influxd(tmp_path: Path) -> Iterator[LocalInfluxd]:
    """An influxd of this test only (it may be killed and started again on the same data)."""
    server = start_influxd(tmp_path / "influxd")
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL of this test only (`support.restart_postgres` restarts it)."""
    # Not under pytest's 0700 temp tree: run as root, the server runs as its own system user.
    root = Path(tempfile.mkdtemp(prefix="data-platform-pg-"))
    server = LocalPostgres(pgdata=root / "data", cleanup_mode="stop").start()
    yield server
    close_pools()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
