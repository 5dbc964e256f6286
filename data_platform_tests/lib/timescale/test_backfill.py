"""Ingest and rollups over a partition range as one run, on both engines, in atomic slices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from psycopg import sql

from data_platform.lib.warehouse import WarehouseResource
from data_platform_tests.helpers import materializations
from data_platform_tests.lib.test_time_vocabulary import write
from data_platform_tests.lib.timescale.helpers import (
    assert_rollup_equals,
    expected_rollup,
    read_rollup,
)

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 3
STEP_S = 600
WIDTHS = {
    "mig_15m": timedelta(minutes=15),
    "mig_1h": timedelta(hours=1),
    "mig_7h": timedelta(hours=7),
    "mig_1d": timedelta(days=1),
}


def lines() -> str:
    out = []
    for i in range(DAYS * 86_400 // STEP_S):
        t = int((START + timedelta(seconds=i * STEP_S)).timestamp()) * 1_000_000_000
        for site in ("north", "south"):
            out.append(f"pump,site={site} flow={(i % 37) * 0.731 - 9.5},rpm={i}i {t}")
    return "\n".join(out)


def project(influx_url: str, database: str, schema: str) -> dict[str, dict[str, Any]]:
    ingest = {
        "type": "data_platform.lib.InfluxIngestComponent",
        "attributes": {
            "name": "mig",
            "influx": {"url": influx_url, "database": database},
            "measurements": [{"name": "pump"}],
            "target": {"schema": f"{schema}_raw"},
            "partitions": {"start": "2024-03-01", "granularity": "daily"},
        },
    }
    rollups = {
        "type": "data_platform.lib.TimescaleAggregateComponent",
        "attributes": {
            "source": {"schema": f"{schema}_raw", "all_writers": True},
            "target": {"schema": schema, "name_prefix": "mig"},
            "buckets": [{"width": w} for w in ("15 minutes", "1 hour", "7 hours", "1 day")],
            "materialized_only": True,
        },
    }
    return {"mig": ingest, "rollups": rollups}


def materialize_the_range(
    influx_url: str,
    database: str,
    schema: str,
    warehouse: WarehouseResource,
    instance: dg.DagsterInstance | None = None,
) -> tuple[dg.ExecuteInJobResult, list[dg.AssetKey]]:
    """Ingest and rollups of the sample project over 2024-03-01...2024-03-03 as one run; the
    result and the asset keys it selected (every asset but the registry)."""
    with create_defs_folder_sandbox() as sandbox:
        write(sandbox.defs_folder_path, project(influx_url, database, schema))
        with sandbox.build_all_defs() as defs:
            assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
            keys = [k for a in assets for k in a.keys if k.path[-1] != "influx_tags"]
            result = dg.materialize(
                assets,
                selection=keys,
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "2024-03-01",
                    "dagster/asset_partition_range_end": "2024-03-03",
                },
                resources={"warehouse": warehouse},
            )
    return result, keys


@pytest.mark.parametrize(
    "engine", ["postgresql", pytest.param("timescaledb", marks=pytest.mark.timescale)]
)
def test_ingest_and_rollups_over_a_range_in_one_run(
    engine: str, influxd, influx_db: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("timescale_url" if engine == "timescaledb" else "warehouse_url")
    schema = f"mig_{engine[:2]}"
    influxd.write_lines(influx_db, lines())
    warehouse = WarehouseResource(url=url, prepared_statements=engine != "timescaledb")
    result, _keys = materialize_the_range(influxd.url, influx_db, schema, warehouse)
    assert result.success
    meta = {key.to_user_string(): m for key, m in materializations(result).items()}
    assert meta["rollups/mig_15m"]["engine"].startswith(engine)
    # Three days, refreshed a day at a time; the 7 h buckets straddle the slices.
    assert meta["rollups/mig_15m"]["slices"] == 3
    assert meta["rollups/mig_7h"]["window"] == (
        "[2024-02-29T19:00:00+00:00, 2024-03-04T00:00:00+00:00)"
    )
    assert not [e for e in result.get_asset_check_evaluations() if not e.passed]
    # Every partition of the range is recorded for ingest and rollups alike.
    recorded: set[tuple[str, str | None]] = set()
    for event in result.get_asset_materialization_events():
        recorded.add((event.materialization.asset_key.to_user_string(), event.partition))
    for key in ("mig/pump", "rollups/mig_1d"):
        assert {p for k, p in recorded if k == key} == {"2024-03-01", "2024-03-02", "2024-03-03"}

    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        raw = [
            (ts, tag_id, value, None)
            for ts, tag_id, value in conn.execute(
                sql.SQL("SELECT ts, tag_id, value FROM {} WHERE value IS NOT NULL").format(
                    sql.Identifier(f"{schema}_raw", "influx_hist")
                )
            ).fetchall()
        ]
        assert len(raw) == DAYS * 86_400 // STEP_S * 2 * 2
        for name, width in WIDTHS.items():
            assert_rollup_equals(read_rollup(conn, schema, name), expected_rollup(raw, width))


def test_range_on_batched_postgres_storage_records_every_partition(
    influxd, influx_db: str, postgres, warehouse_url: str, monkeypatch, tmp_path
) -> None:
    """The instance settings README gives a migration (PostgreSQL storage, as in deploy/,
    with DAGSTER_EVENT_BATCH_SIZE and DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS): one
    planned event per asset for the range instead of one per partition, and still every
    partition of the range recorded materialized, for ingest and rollups alike."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    storage = postgres.create_database("dagster_batched")
    (tmp_path / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: "
        f"{storage.replace('postgresql://', 'postgresql+psycopg2://')!r}\n"
    )
    influxd.write_lines(influx_db, lines())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        result, keys = materialize_the_range(
            influxd.url, influx_db, "mig_batched", WarehouseResource(url=warehouse_url), instance
        )
        assert result.success
        assert not [e for e in result.get_asset_check_evaluations() if not e.passed]
        planned = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        planned_keys = [r.event_log_entry.get_dagster_event().asset_key for r in planned]
        # One per asset, not one per partition.
        assert sorted(str(k) for k in planned_keys) == sorted(str(k) for k in keys)
        days = {"2024-03-01", "2024-03-02", "2024-03-03"}
        assert {k.to_user_string(): instance.get_materialized_partitions(k) for k in keys} == {
            k.to_user_string(): days for k in keys
        }
