"""One advisory-lock key scheme: stable keys, separate families, locks that really exclude."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from data_platform.lib.historian.locks import advisory_key, session_locks, xact_lock
from data_platform.lib.historian.tables import HistorianTables
from data_platform.lib.historian.window import WindowLock
from data_platform.lib.timing.window import Window

T0 = datetime(2024, 1, 1, tzinfo=UTC)
PINNED_ROLLUP_KEY = 1924324283341641679


def test_keys_are_stable_signed_64_bit_and_keep_their_parts_apart() -> None:
    key = advisory_key("rollup", "rollups.agg_1m")
    # Pinned: every process of every deployed version must derive the same key.
    assert key == advisory_key("rollup", "rollups.agg_1m") == PINNED_ROLLUP_KEY
    assert -(2**63) <= key < 2**63
    assert advisory_key("historian", "rollups.agg_1m") != key
    assert advisory_key("a:b", "c") != advisory_key("a", "b:c")
    assert advisory_key("historian", "raw.t", "src/m", 3) == advisory_key(
        "historian", "raw.t", "src/m", "3"
    )


def test_window_lock_takes_one_key_per_slot_in_time_order() -> None:
    tables = HistorianTables("raw")
    lock = WindowLock("src/m", timedelta(hours=1))
    one_slot = lock.keys(tables, Window(T0, T0 + timedelta(hours=1)))
    # Widened by lateness into the neighbour's slots: shares the first slot with the neighbour.
    widened = lock.keys(tables, Window(T0 - timedelta(minutes=10), T0 + timedelta(hours=1)))
    assert len(one_slot) == 1 and len(widened) == 2
    assert widened[1] == one_slot[0]
    assert (
        WindowLock("src/other", timedelta(hours=1)).keys(
            tables, Window(T0, T0 + timedelta(hours=1))
        )
        != one_slot
    )
    assert one_slot[0] != tables.lock_key


def held_elsewhere(url: str, key: int) -> bool:
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        assert row is not None
        if row[0]:
            other.execute("SELECT pg_advisory_unlock(%s)", [key])
        return not row[0]


@pytest.mark.integration
def test_session_locks_hold_for_the_block_and_are_released_on_error(warehouse_url: str) -> None:
    keys = [advisory_key("test", "a"), advisory_key("test", "b")]
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        with session_locks(conn, keys):
            assert all(held_elsewhere(warehouse_url, k) for k in keys)
        assert not any(held_elsewhere(warehouse_url, k) for k in keys)
        with pytest.raises(RuntimeError), session_locks(conn, keys):
            raise RuntimeError("the work failed")
        assert not any(held_elsewhere(warehouse_url, k) for k in keys)
        assert not conn.closed


@pytest.mark.integration
def test_a_session_whose_unlock_fails_is_closed_and_frees_its_locks(warehouse_url: str) -> None:
    key = advisory_key("test", "broken")
    conn = psycopg.connect(warehouse_url, autocommit=True)
    with session_locks(conn, [key]):
        assert held_elsewhere(warehouse_url, key)
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")  # leaves the session unable to run the unlock
    assert conn.closed
    # The server ends the session (and frees its locks) shortly after the client hangs up.
    deadline = time.monotonic() + 10
    while held_elsewhere(warehouse_url, key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not held_elsewhere(warehouse_url, key)


@pytest.mark.integration
def test_xact_lock_lasts_until_the_transaction_ends(warehouse_url: str) -> None:
    key = advisory_key("test", "xact")
    with psycopg.connect(warehouse_url) as conn:
        xact_lock(conn, [key])
        assert held_elsewhere(warehouse_url, key)
        conn.commit()
        assert not held_elsewhere(warehouse_url, key)
