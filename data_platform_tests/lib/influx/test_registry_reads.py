"""What an ingest run reads of the signal registry: its own signals, never the whole registry,
and which rows a window's replacement deletes (the selection's own, also of silent signals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform_tests.helpers import load_yaml_component, run_assets

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NS = 1_000_000_000
HOUR = "2024-03-01-00:00"
INGEST = dg.AssetKey(["fleet", "fleet"])
SILENT_SITES = 500
"""Sites registered earlier that send nothing in the tested windows: 5,000 signals."""


def lines(sites: list[str], hours: int = 2) -> str:
    """Two fields per site, one point every 5 minutes."""
    t0 = int(T0.timestamp()) * NS
    return "\n".join(
        f"fleet,site={site} p={i + s},q={i * 2} {t0 + i * 300 * NS}"
        for i in range(hours * 12)
        for s, site in enumerate(sites)
    )


def attrs(influxd: Any, db: str, measurements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "fleet",
        "influx": {"url": influxd.url, "database": db},
        "measurements": measurements,
        "target": {"schema": "raw"},
        "partitions": {"start": "2024-03-01", "granularity": "hourly"},
    }


def rows_by_site(conn: psycopg.Connection, hour: int) -> dict[str, int]:
    start = T0 + timedelta(hours=hour)
    return dict(
        conn.execute(
            "SELECT t.tags->>'site', count(*) FROM raw.influx_hist h JOIN raw.influx_tag t "
            "USING (tag_id) WHERE h.ts >= %s AND h.ts < %s GROUP BY 1",
            [start, start + timedelta(hours=1)],
        ).fetchall()
    )


@pytest.fixture
def registry_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every statement on the registry table made through psycopg, with the rows it returned."""
    reads: list[tuple[str, int]] = []
    execute = psycopg.Cursor.execute

    def counted(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        out = execute(self, query, *args, **kwargs)
        text = query if isinstance(query, str) else query.as_string(self)
        if '"influx_tag"' in text and text.lstrip().upper().startswith(("SELECT", "WITH")):
            reads.append((text, max(self.rowcount, 0)))
        return out

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    yield reads


def test_a_run_reads_only_its_own_signals_of_a_large_registry(
    influxd, influx_db, warehouse_url, pg_conn, registry_reads
):
    sites = ["a", "b", "c"]
    influxd.write_lines(influx_db, lines(sites))
    tables = HistorianTables("raw")
    ensure_tables(pg_conn, tables)
    silent = [
        Signal("fleet", "fleet", (("site", f"silent{n:04d}"),), f)
        for n in range(SILENT_SITES)
        for f in ("p", "q")
    ]
    types = {("fleet", "p"): "float", ("fleet", "q"): "float"}
    SignalRegistry("fleet", tables, Signal.default_name).ensure(pg_conn, silent, types)
    with load_yaml_component(attrs(influxd, influx_db, [{"name": "fleet"}])) as (_c, defs):
        # The ingest asset only: the registry asset reads the whole registry, by design.
        registry_reads.clear()
        run_assets(defs, warehouse_url, partition_key=HOUR, selection=[INGEST])
        first = sum(n for _q, n in registry_reads)
        registry_reads.clear()
        # The re-run's window holds the rows of the first: their signals are read to delete them.
        run_assets(defs, warehouse_url, partition_key=HOUR, selection=[INGEST])
        again = sum(n for _q, n in registry_reads)
    assert rows_by_site(pg_conn, 0) == {"a": 24, "b": 24, "c": 24}  # 12 points x 2 fields
    # 6 signals of the run, read by key, by the window's rows and by the checks' join (one
    # row per field): a run that read its registry (5,006 signals) would fetch thousands.
    assert 0 < first <= 20, [(q[:80], n) for q, n in registry_reads]
    assert 0 < again <= 20, [(q[:80], n) for q, n in registry_reads]


def test_a_rerun_deletes_its_selections_rows_only(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, lines(["north1", "north2", "south1"]))
    # Two assets of one source share its measurement: each selects its own sites.
    north = attrs(
        influxd,
        influx_db,
        [{"name": "fleet", "asset_name": "north", "tags": {"site": ["north1", "north2"]}}],
    )
    south = attrs(
        influxd, influx_db, [{"name": "fleet", "asset_name": "south", "tags": {"site": ["south1"]}}]
    )
    keys = {"north": dg.AssetKey(["fleet", "north"]), "south": dg.AssetKey(["fleet", "south"])}
    with load_yaml_component(south) as (_c, defs):
        for hour in ("2024-03-01-00:00", "2024-03-01-01:00"):
            run_assets(defs, warehouse_url, partition_key=hour, selection=[keys["south"]])
    with load_yaml_component(north) as (_c, defs):
        for hour in ("2024-03-01-00:00", "2024-03-01-01:00"):
            run_assets(defs, warehouse_url, partition_key=hour, selection=[keys["north"]])
        everything = {"north1": 24, "north2": 24, "south1": 24}
        assert rows_by_site(pg_conn, 0) == rows_by_site(pg_conn, 1) == everything
        # The source deletes one northern site and the southern one: re-running the north
        # asset removes the deleted site's rows, and keeps what the south asset wrote.
        influxd.query('DROP SERIES FROM "fleet" WHERE "site" = \'north2\'', db=influx_db)
        influxd.query('DROP SERIES FROM "fleet" WHERE "site" = \'south1\'', db=influx_db)
        run_assets(defs, warehouse_url, partition_key=HOUR, selection=[keys["north"]])
    assert rows_by_site(pg_conn, 0) == {"north1": 24, "south1": 24}
    assert rows_by_site(pg_conn, 1) == everything  # another window: untouched
