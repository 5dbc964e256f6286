"""Fixtures that start real servers: an `influxd` and an embedded PostgreSQL.

Every server listens on 127.0.0.1 (or a Unix socket) and lives in a temp directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from data_platform.lib.warehouse import close_pools
from data_platform.utils.local_servers import (
    LocalInfluxd,
    LocalPostgres,
    influxd_binary,
    start_influxd,
    start_postgres,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read the developer's deployment variables or DAGSTER_HOME."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("DAGSTER_CLOUD_", "DATA_PLATFORM_")) or name in {
            "WAREHOUSE_URL",
            "DAGSTER_HOME",
        }:
            del os.environ[name]
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    """One throwaway influxd for the session; tests create their own databases on it."""
    if influxd_binary() is None:
        pytest.fail("influxd is not installed: run `apt-get install influxdb` (CI installs it)")
    server = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxd: LocalInfluxd) -> str:
    """A fresh, empty InfluxDB database name on the session's influxd."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


@pytest.fixture(scope="session")
def timescale_url() -> Iterator[str]:
    """libpq URL of one in-memory TimescaleDB engine (PGlite) for the session.

    Its clients share one backend session: connect with `prepare_threshold=None`
    (`WarehouseResource(prepared_statements=False)`) and work in schemas of your own.
    """
    from data_platform_tests.timescale_engine import start_timescale_engine

    with start_timescale_engine() as engine:
        yield engine.url


@pytest.fixture(autouse=True)
def _close_warehouse_pools() -> Iterator[None]:
    """Close the pools runs opened, so databases and servers shut down without waiting."""
    yield
    close_pools()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """One embedded PostgreSQL for the session; tests get their own database on it."""
    # Not under pytest's 0700 temp tree: run as root, the server runs as its own system user.
    root = Path(tempfile.mkdtemp(prefix="data-platform-pg-"))
    server = start_postgres(root / "data", cleanup_mode="delete")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def warehouse_url(postgres: LocalPostgres) -> str:
    """libpq URL of a fresh, empty database (plain PostgreSQL, no TimescaleDB)."""
    return postgres.create_database(f"wh_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def pg_conn(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn
