"""Warehouse settings from the environment, and prepared statements off for shared sessions."""

from __future__ import annotations

import psycopg
import pytest

from data_platform.definitions import platform_resources
from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.environment_helpers import get_warehouse_options


def run_repeated_statements(warehouse: WarehouseResource) -> None:
    """Enough executions of one statement, on two pooled connections, for psycopg to prepare it."""
    for _ in range(2):
        with (
            warehouse.connection(autocommit=True) as first,
            warehouse.connection(autocommit=True) as second,
        ):
            for _ in range(8):
                for conn in (first, second):
                    assert conn.execute("SELECT %s::int + 1", [1]).fetchone() == (2,)


@pytest.mark.parametrize(
    ("variables", "options"),
    [
        ({}, {}),
        ({"WAREHOUSE_PREPARED_STATEMENTS": "off"}, {"prepared_statements": False}),
        ({"WAREHOUSE_PREPARED_STATEMENTS": " ON "}, {"prepared_statements": True}),
        ({"WAREHOUSE_PREPARED_STATEMENTS": "0"}, {"prepared_statements": False}),
        ({"WAREHOUSE_CONNECT_TIMEOUT_SECONDS": "3"}, {"connect_timeout_seconds": 3.0}),
        ({"WAREHOUSE_POOL_TIMEOUT_SECONDS": "12.5"}, {"pool_timeout_seconds": 12.5}),
    ],
)
def test_warehouse_options_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], options: dict[str, object]
) -> None:
    for name in (
        "WAREHOUSE_PREPARED_STATEMENTS",
        "WAREHOUSE_CONNECT_TIMEOUT_SECONDS",
        "WAREHOUSE_POOL_TIMEOUT_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert get_warehouse_options() == options
    warehouse = platform_resources()["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    for name, value in options.items():
        assert getattr(warehouse, name) == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WAREHOUSE_PREPARED_STATEMENTS", "sometimes"),
        ("WAREHOUSE_CONNECT_TIMEOUT_SECONDS", "soon"),
        ("WAREHOUSE_POOL_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_warehouse_options_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        get_warehouse_options()


@pytest.mark.timescale
def test_prepared_statements_off_on_an_engine_that_shares_one_session(
    timescale_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TimescaleDB test engine shares one session between clients: psycopg's prepared
    statements collide there, and WAREHOUSE_PREPARED_STATEMENTS=off avoids them."""
    monkeypatch.setenv("WAREHOUSE_URL", timescale_url)
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        run_repeated_statements(WarehouseResource(url=timescale_url))

    monkeypatch.setenv("WAREHOUSE_PREPARED_STATEMENTS", "off")
    warehouse = platform_resources()["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    assert warehouse.prepared_statements is False
    run_repeated_statements(WarehouseResource(url=timescale_url, **get_warehouse_options()))
