"""The historian's DDL on a real PostgreSQL: the full layout and the value-table-only variant."""

from __future__ import annotations

import psycopg
import pytest

from data_platform.lib.historian.tables import HistorianTables, ensure_tables

pytestmark = pytest.mark.integration


def relations(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'i') ORDER BY 1",
        [schema],
    ).fetchall()
    return dict(rows)


def test_full_layout_is_created_once_with_registry_and_time_index(
    pg_conn: psycopg.Connection,
) -> None:
    tables = HistorianTables("raw", "hist", "tags")
    assert ensure_tables(pg_conn, tables) is None  # plain PostgreSQL
    ensure_tables(pg_conn, tables)
    assert relations(pg_conn, "raw") == {
        "hist": "r",
        "hist_tag_id_ts_key": "i",
        "hist_ts_brin": "i",
        "tags": "r",
        "tags_field_type_idx": "i",
        "tags_key_key": "i",
        "tags_pkey": "i",
        "tags_tag_name_key": "i",
    }
    columns = pg_conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = 'hist' ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [
        ("ts", "timestamp with time zone"),
        ("tag_id", "integer"),
        ("value", "double precision"),
        ("value_text", "text"),
        ("qc", "smallint"),
        ("meta", "jsonb"),
    ]


def test_value_table_alone_without_registry_or_time_index(pg_conn: psycopg.Connection) -> None:
    ensure_tables(pg_conn, HistorianTables("bare"), registry=False, brin_index=False)
    assert relations(pg_conn, "bare") == {
        "influx_hist": "r",
        "influx_hist_tag_id_ts_key": "i",
    }
