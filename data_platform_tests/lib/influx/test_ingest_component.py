"""InfluxIngestComponent end to end: a real influxd, a real PostgreSQL, real Dagster runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from data_platform.lib.historian.signals import Signal
from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.local_servers import LocalInfluxd, free_port
from data_platform_tests.helpers import (
    check_results,
    load_yaml_component,
    materializations,
    run_assets,
)

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NS = 1_000_000_000


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def plant_lines(hours: int = 2, step_s: int = 60) -> list[str]:
    """Two devices on two sites, float/integer/boolean/string fields, one point a minute."""
    lines = []
    for i in range(hours * 3600 // step_s):
        t = ns(T0) + i * step_s * NS
        for site, device in (("north", "inv1"), ("south", "inv2")):
            lines.append(
                f"inverter,site={site},device={device} "
                f'p={100.5 + i},n={i}i,ok={"true" if i % 2 else "false"},state="run {i}" {t}'
            )
        lines.append(f"meter,site=north energy={i * 1.5} {t}")
    return lines


def attrs(influxd: LocalInfluxd, db: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "plant",
        "influx": {"url": influxd.url, "database": db, "chunk_size": 500},
        "measurements": [{"name": "inverter"}, {"name": "meter"}],
        "target": {"schema": "raw"},
        "partitions": {"start": "2024-03-01", "granularity": "hourly"},
        "retry_backoff_seconds": 0.05,
    }
    base.update(overrides)
    return base


def table_rows(conn: psycopg.Connection, schema: str = "raw") -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL(
            "SELECT t.tag_name, h.ts, h.value, h.value_text, h.qc, h.meta FROM {}.influx_hist h "
            "JOIN {}.influx_tag t USING (tag_id) ORDER BY 1, 2"
        ).format(sql.Identifier(schema), sql.Identifier(schema))
    ).fetchall()


def test_ingest_one_partition_all_field_types(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines()))
    with load_yaml_component(attrs(influxd, influx_db)) as (_component, defs):
        result = run_assets(
            defs,
            warehouse_url,
            partition_key="2024-03-01-00:00",
            selection=[dg.AssetKey(["plant", "inverter"]), dg.AssetKey(["plant", "meter"])],
        )
    assert result.success
    mats = materializations(result)
    # 60 minutes x 2 devices x 4 fields, and 60 meter values.
    assert mats[dg.AssetKey(["plant", "inverter"])]["dagster/row_count"] == 480
    assert mats[dg.AssetKey(["plant", "meter"])]["dagster/row_count"] == 60
    assert mats[dg.AssetKey(["plant", "inverter"])]["series"] >= 2
    assert "preview" in mats[dg.AssetKey(["plant", "inverter"])]

    rows = table_rows(pg_conn)
    assert len(rows) == 540
    by_name: dict[str, list[tuple[Any, ...]]] = {}
    for name, *rest in rows:
        by_name.setdefault(name, []).append(tuple(rest))
    assert set(by_name) == {
        "plant/inverter,device=inv1,site=north.p",
        "plant/inverter,device=inv1,site=north.n",
        "plant/inverter,device=inv1,site=north.ok",
        "plant/inverter,device=inv1,site=north.state",
        "plant/inverter,device=inv2,site=south.p",
        "plant/inverter,device=inv2,site=south.n",
        "plant/inverter,device=inv2,site=south.ok",
        "plant/inverter,device=inv2,site=south.state",
        "plant/meter,site=north.energy",
    }
    first = T0
    assert by_name["plant/inverter,device=inv1,site=north.p"][0] == (first, 100.5, None, 0, None)
    assert by_name["plant/inverter,device=inv1,site=north.n"][5][1] == 5.0
    assert by_name["plant/inverter,device=inv1,site=north.ok"][1][1] == 1.0
    assert by_name["plant/inverter,device=inv1,site=north.ok"][0][1] == 0.0
    assert by_name["plant/inverter,device=inv1,site=north.state"][7][1:3] == (None, "run 7")
    assert by_name["plant/meter,site=north.energy"][-1][0] == T0 + timedelta(minutes=59)

    registry = pg_conn.execute(
        "SELECT measurement, tags, field, tag_type FROM raw.influx_tag ORDER BY tag_name"
    ).fetchall()
    types = {(m, f): t for m, _tags, f, t in registry}
    assert types[("inverter", "p")] == "float"
    assert types[("inverter", "n")] == "integer"
    assert types[("inverter", "ok")] == "boolean"
    assert types[("inverter", "state")] == "string"

    checks = check_results(result)
    for check in ("reconciliation", "gaps", "schema_drift", "lag"):
        assert checks[("plant/inverter", check)].passed, check


def test_rerun_is_idempotent_and_picks_up_late_points(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines()))
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
        before = table_rows(pg_conn)
        run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
        assert table_rows(pg_conn) == before

        # A late point inside the window and a corrected value: the re-run replaces the window.
        late = ns(T0 + timedelta(minutes=30, seconds=30))
        fixed = ns(T0 + timedelta(minutes=3))
        influxd.write_lines(
            influx_db,
            f"meter,site=north energy=-1 {late}\nmeter,site=north energy=999 {fixed}\n",
        )
        result = run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    after = table_rows(pg_conn)
    assert len(after) == len(before) + 1
    energy = {ts: v for name, ts, v, *_ in after if name == "plant/meter,site=north.energy"}
    assert energy[T0 + timedelta(minutes=30, seconds=30)] == -1
    assert energy[T0 + timedelta(minutes=3)] == 999
    assert check_results(result)[("plant/meter", "reconciliation")].passed


def test_empty_window_succeeds_with_no_rows(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=1)))
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        result = run_assets(defs, warehouse_url, partition_key="2024-03-01-05:00")
    assert result.success
    assert materializations(result)[dg.AssetKey(["plant", "inverter"])]["dagster/row_count"] == 0
    assert pg_conn.execute("SELECT count(*) FROM raw.influx_hist").fetchone() == (0,)


@pytest.mark.parametrize(
    ("backfill_window", "windows"),
    [(None, 1), ("1h", 6), ("2 hours", 3), ("4h", 2)],
    ids=["a-day-by-default", "one-partition-at-a-time", "two-partitions", "a-shorter-last-one"],
)
def test_backfill_range_runs_as_one_run_in_atomic_slices(
    influxd, influx_db, warehouse_url, pg_conn, backfill_window, windows
):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=6, step_s=300)))
    partitions = {"start": "2024-03-01", "granularity": "hourly"}
    if backfill_window is not None:
        partitions["backfill_window"] = backfill_window
    config = attrs(influxd, influx_db, partitions=partitions)
    with load_yaml_component(config) as (_c, defs):
        result = run_assets(
            defs, warehouse_url, partition_range=("2024-03-01-00:00", "2024-03-01-05:00")
        )
    assert result.success
    meta = materializations(result)[dg.AssetKey(["plant", "inverter"])]
    assert meta["windows"] == windows
    assert meta["dagster/row_count"] == 6 * 12 * 2 * 4
    assert pg_conn.execute("SELECT count(*) FROM raw.influx_hist").fetchone() == (6 * 12 * 9,)
    # Each partition of the range is recorded as materialized.
    partitions = {
        e.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["plant", "meter"])
    }
    assert len(partitions) == 6


def test_all_measurements_as_one_asset_with_filters(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=1)))
    config = attrs(influxd, influx_db)
    del config["measurements"]
    with load_yaml_component(config) as (_c, defs):
        keys = {k for a in defs.assets or [] for k in a.keys}  # type: ignore[union-attr]
        assert keys == {
            dg.AssetKey(["plant", "influx_hist"]),
            dg.AssetKey(["plant", "influx_tags"]),
        }
        result = run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    assert (
        materializations(result)[dg.AssetKey(["plant", "influx_hist"])]["dagster/row_count"] == 540
    )

    filtered = attrs(
        influxd,
        influx_db,
        name="filtered",
        measurements=[{"name": "inverter", "fields": ["p"], "tags": {"site": ["south"]}}],
    )
    with load_yaml_component(filtered) as (_c, defs):
        run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    names = pg_conn.execute(
        "SELECT DISTINCT t.tag_name FROM raw.influx_hist h JOIN raw.influx_tag t USING (tag_id) "
        "WHERE t.source = 'filtered'"
    ).fetchall()
    assert names == [("filtered/inverter,device=inv2,site=south.p",)]


HOSTILE_MEASUREMENT = 'we"ird; DROP TABLE raw.influx_hist;-- mesure'
HOSTILE_TAG_KEY = "ta g'--"
HOSTILE_TAG_VALUE = 'va,l=ue "x" \' ; /* température */'
HOSTILE_FIELD = 'fi"eld ; DELETE'


def _lp_escape(text: str, specials: str) -> str:
    for ch in specials:
        text = text.replace(ch, "\\" + ch)
    return text


def test_hostile_identifiers_round_trip(influxd, influx_db, warehouse_url, pg_conn):
    measurement = _lp_escape(HOSTILE_MEASUREMENT, ", ")
    tag_key = _lp_escape(HOSTILE_TAG_KEY, ",= ")
    tag_value = _lp_escape(HOSTILE_TAG_VALUE, ",= ")
    field = _lp_escape(HOSTILE_FIELD, ",= ")
    t = ns(T0 + timedelta(minutes=1))
    influxd.write_lines(
        influx_db,
        f'{measurement},{tag_key}={tag_value} {field}=1.25,ünï\\ çødé="a \\"quoted\\" value" {t}\n',
    )
    schema = 'raw "x"; DROP SCHEMA public; --'
    config = attrs(
        influxd,
        influx_db,
        measurements=[{"name": HOSTILE_MEASUREMENT, "asset_name": "hostile"}],
        target={"schema": schema, "table": "hist; --", "registry_table": 'tag"s'},
    )
    with load_yaml_component(config) as (_c, defs):
        result = run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    assert result.success
    rows = pg_conn.execute(
        sql.SQL(
            "SELECT t.measurement, t.tags, t.field, h.value, h.value_text FROM {} h "
            "JOIN {} t USING (tag_id) ORDER BY t.field"
        ).format(sql.Identifier(schema, "hist; --"), sql.Identifier(schema, 'tag"s'))
    ).fetchall()
    assert rows == [
        (HOSTILE_MEASUREMENT, {HOSTILE_TAG_KEY: HOSTILE_TAG_VALUE}, HOSTILE_FIELD, 1.25, None),
        (
            HOSTILE_MEASUREMENT,
            {HOSTILE_TAG_KEY: HOSTILE_TAG_VALUE},
            "ünï çødé",
            None,
            'a "quoted" value',
        ),
    ]
    assert pg_conn.execute("SELECT to_regnamespace('public')").fetchone() != (None,)
    assert check_results(result)[("plant/hostile", "reconciliation")].passed


def test_sub_microsecond_collision_is_refused_or_counted(
    influxd, influx_db, warehouse_url, pg_conn
):
    t = ns(T0)
    influxd.write_lines(
        influx_db, f"inverter,site=a p=1 {t + 100}\ninverter,site=a p=2 {t + 200}\n"
    )
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        result = run_assets(
            defs, warehouse_url, partition_key="2024-03-01-00:00", raise_on_error=False
        )
    assert not result.success
    text = str(result.get_step_failure_events()[0].event_specific_data.error)  # type: ignore[union-attr]
    assert "same microsecond" in text and "keep_first" in text and "plant" in text
    assert pg_conn.execute("SELECT count(*) FROM raw.influx_hist").fetchone() == (0,)

    with load_yaml_component(attrs(influxd, influx_db, on_timestamp_collision="keep_first")) as (
        _c,
        defs,
    ):
        result = run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    meta = materializations(result)[dg.AssetKey(["plant", "inverter"])]
    assert meta["timestamp_collisions"] == 1
    assert pg_conn.execute("SELECT value, meta FROM raw.influx_hist").fetchall() == [
        (1.0, {"ns": 100})
    ]
    assert check_results(result)[("plant/inverter", "reconciliation")].passed


def test_unknown_database_fails_and_keeps_loaded_data(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=1)))
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    before = table_rows(pg_conn)
    with load_yaml_component(attrs(influxd, "no_such_db")) as (_c, defs):
        result = run_assets(
            defs, warehouse_url, partition_key="2024-03-01-00:00", raise_on_error=False
        )
    assert not result.success
    text = str(result.get_step_failure_events()[0].event_specific_data.error)  # type: ignore[union-attr]
    assert "plant" in text and "no_such_db" in text
    assert table_rows(pg_conn) == before


def test_connection_refused_retries_then_names_source_and_window(warehouse_url):
    config = {
        "name": "down",
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "x"},
        "measurements": [{"name": "m"}],
        "partitions": {"start": "2024-03-01"},
        "max_attempts": 2,
        "retry_backoff_seconds": 0.01,
    }
    with load_yaml_component(config) as (_c, defs):
        result = run_assets(
            defs, warehouse_url, partition_key="2024-03-01-00:00", raise_on_error=False
        )
    assert not result.success
    text = str(result.get_step_failure_events()[0].event_specific_data.error)  # type: ignore[union-attr]
    assert "down" in text


def test_gap_and_type_drift_are_reported(influxd, influx_db, warehouse_url):
    lines = []
    for i in range(60):
        if 20 <= i < 50:  # a 30 minute silence in a series written every minute
            continue
        lines.append(f"inverter,site=a p={i} {ns(T0) + i * 60 * NS}")
    # The same field written as a string in another shard (1.x shards are weekly).
    lines.append(f'inverter,site=a p="broken" {ns(T0 + timedelta(days=30))}')
    influxd.write_lines(influx_db, "\n".join(lines))
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        result = run_assets(
            defs,
            warehouse_url,
            partition_key="2024-03-01-00:00",
            selection=[dg.AssetKey(["plant", "inverter"])],
        )
    checks = check_results(result)
    gaps = checks[("plant/inverter", "gaps")]
    assert not gaps.passed
    assert gaps.metadata["gaps"].value[0]["longest_silence_s"] == pytest.approx(1860)
    drift = checks[("plant/inverter", "schema_drift")]
    assert not drift.passed
    assert drift.metadata["fields_with_several_types"].value == [
        {"measurement": "inverter", "field": "p", "types": "float,string"}
    ]


def test_registry_asset_records_added_and_removed(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=1)))
    registry_key = dg.AssetKey(["plant", "influx_tags"])
    with load_yaml_component(attrs(influxd, influx_db)) as (_c, defs):
        first = run_assets(defs, warehouse_url, selection=[registry_key])
        assert materializations(first)[registry_key]["added"] == 9
        influxd.query('DROP SERIES FROM "inverter" WHERE "device" = \'inv2\'', db=influx_db)
        second = run_assets(defs, warehouse_url, selection=[registry_key])
    meta = materializations(second)[registry_key]
    assert meta["added"] == 0 and meta["removed"] == 4
    removed = pg_conn.execute(
        "SELECT count(*) FROM raw.influx_tag WHERE removed_at IS NOT NULL"
    ).fetchone()
    assert removed == (4,)


def test_registry_asset_stamps_signals_that_hold_no_value(
    influxd, influx_db, warehouse_url, pg_conn
):
    """Registered signals that never carried a value (the old series x field discovery
    registered every series with every field of its measurement) are stamped removed; a signal
    silent in the look-back that holds rows in the warehouse is not, nor is a found one."""
    t0 = ns(T0)
    ten_days = 10 * 86_400 * NS
    influxd.write_lines(
        influx_db,
        "\n".join(
            [f"sparse,s=a x=1 {t0}", f"sparse,s=b y=2 {t0}", f"sparse,s=c x=3 {t0 - ten_days}"]
        ),
    )
    registry_key = dg.AssetKey(["plant", "influx_tags"])
    config = attrs(influxd, influx_db, measurements=[{"name": "sparse"}])
    with load_yaml_component(config) as (_c, defs):
        first = run_assets(defs, warehouse_url, selection=[registry_key])
        assert materializations(first)[registry_key]["added"] == 2  # a.x and b.y
        # What an older registry holds besides: the cross product's a.y and b.x, and c.x,
        # silent in the 7-day look-back but ingested earlier.
        ids = {}
        for series, fld in (("a", "y"), ("b", "x"), ("c", "x")):
            signal = Signal("plant", "sparse", (("s", series),), fld)
            row = pg_conn.execute(
                "INSERT INTO raw.influx_tag (key, tag_name, source, measurement, tags, field) "
                "VALUES (%s, %s, 'plant', 'sparse', %s::jsonb, %s) RETURNING tag_id",
                [signal.key, f"old.{series}.{fld}", f'{{"s": "{series}"}}', fld],
            ).fetchone()
            assert row is not None
            ids[f"{series}.{fld}"] = row[0]
        pg_conn.execute(
            "INSERT INTO raw.influx_hist (ts, tag_id, value) VALUES (%s, %s, 3)",
            [T0 - timedelta(days=10), ids["c.x"]],
        )
        second = run_assets(defs, warehouse_url, selection=[registry_key])
    meta = materializations(second)[registry_key]
    assert meta["signals"] == 2 and meta["added"] == 0 and meta["removed"] == 0
    assert meta["without_values"] == 2
    stamped = pg_conn.execute(
        "SELECT tag_name, removed_at IS NOT NULL FROM raw.influx_tag ORDER BY tag_name"
    ).fetchall()
    assert [name for name, is_stamped in stamped if is_stamped] == ["old.a.y", "old.b.x"]
    assert len(stamped) == 5


def test_signal_name_template_and_units(influxd, influx_db, warehouse_url, pg_conn):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=1)))
    config = attrs(
        influxd,
        influx_db,
        measurements=[{"name": "inverter"}],
        signal_name="{{ tags.site }}.{{ tags.device }}.{{ field }}",
        units={"p": "kW", "inverter.n": "count"},
    )
    with load_yaml_component(config) as (_c, defs):
        run_assets(defs, warehouse_url, partition_key="2024-03-01-00:00")
    rows = dict(pg_conn.execute("SELECT tag_name, unit FROM raw.influx_tag").fetchall())
    assert rows["north.inv1.p"] == "kW"
    assert rows["south.inv2.n"] == "count"
    assert rows["north.inv1.ok"] is None

    clash = attrs(
        influxd,
        influx_db,
        name="clash",
        measurements=[{"name": "inverter"}],
        signal_name="{{ field }}",
    )
    with load_yaml_component(clash) as (_c, defs):
        result = run_assets(
            defs, warehouse_url, partition_key="2024-03-01-00:00", raise_on_error=False
        )
    text = str(result.get_step_failure_events()[0].event_specific_data.error)  # type: ignore[union-attr]
    assert "same tag_name" in text and "signal_name" in text


@pytest.mark.timescale
def test_ingest_into_timescaledb_makes_a_hypertable(influxd, influx_db, timescale_url):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=2, step_s=300)))
    config = attrs(influxd, influx_db, target={"schema": "ts_ingest", "chunk_interval": "1 day"})
    with load_yaml_component(config) as (_c, defs):
        first = run_assets(
            defs, timescale_url, partition_key="2024-03-01-01:00", prepared_statements=False
        )
        again = run_assets(
            defs, timescale_url, partition_key="2024-03-01-01:00", prepared_statements=False
        )
    assert first.success and again.success
    meta = materializations(again)[dg.AssetKey(["plant", "inverter"])]
    assert meta["engine"].startswith("timescaledb")
    assert meta["dagster/row_count"] == 12 * 2 * 4
    with psycopg.connect(timescale_url, prepare_threshold=None) as conn:
        hypertable = conn.execute(
            "SELECT d.time_interval FROM timescaledb_information.dimensions d "
            "WHERE d.hypertable_schema = 'ts_ingest' AND d.hypertable_name = 'influx_hist'"
        ).fetchone()
        assert hypertable is not None and hypertable[0] == timedelta(days=1)
        count = conn.execute("SELECT count(*) FROM ts_ingest.influx_hist").fetchone()
        assert count == (12 * 9,)
    assert check_results(again)[("plant/inverter", "reconciliation")].passed


@pytest.mark.parametrize(
    ("granularity", "key", "minutes"),
    [("15min", "2024-03-01-00:15", 15), ("daily", "2024-03-01", 120)],
)
def test_other_granularities_cover_exactly_their_window(
    influxd, influx_db, warehouse_url, pg_conn, granularity, key, minutes
):
    influxd.write_lines(influx_db, "\n".join(plant_lines(hours=2)))
    config = attrs(influxd, influx_db, measurements=[{"name": "inverter"}])
    config["partitions"] = {"start": "2024-03-01", "granularity": granularity}
    with load_yaml_component(config) as (_c, defs):
        result = run_assets(defs, warehouse_url, partition_key=key)
    assert materializations(result)[dg.AssetKey(["plant", "inverter"])]["dagster/row_count"] == (
        minutes * 2 * 4
    )
    bounds = pg_conn.execute("SELECT min(ts), max(ts) FROM raw.influx_hist").fetchone()
    first = T0 + (timedelta(minutes=15) if granularity == "15min" else timedelta(0))
    assert bounds == (first, first + timedelta(minutes=minutes - 1))


def test_asset_attributes_apply_dagster_translation_fields(influxd, influx_db):
    config = attrs(
        influxd,
        influx_db,
        asset_attributes={
            "key_prefix": ["warehouse", "raw"],
            "group_name": "plants",
            "owners": ["team:ot-data"],
            "tags": {"tier": "gold"},
            "kinds": ["scada"],
        },
    )
    with load_yaml_component(config) as (_c, defs):
        resources = {"warehouse": WarehouseResource(url="postgresql://unused")}
        graph = defs.with_resources(resources).resolve_asset_graph()
    inverter = graph.get(dg.AssetKey(["warehouse", "raw", "plant", "inverter"]))
    assert inverter.group_name == "plants"
    assert inverter.owners == ["team:ot-data"]
    assert inverter.tags["tier"] == "gold"
    assert {"scada", "influxdb", "postgres"} <= set(inverter.kinds)
    assert dg.AssetKey(["warehouse", "raw", "plant", "influx_tags"]) in inverter.parent_keys
    checks = {c.name for c in inverter.check_keys}
    assert checks == {"reconciliation", "lag", "gaps", "schema_drift"}


@pytest.mark.parametrize(("written", "version"), [(3, "3"), ("2", "2"), ("auto", "auto")])
def test_influx_version_may_be_written_as_a_yaml_number(written: object, version: str) -> None:
    """`version: 3` in YAML is a number; it forces the generation like `version: "3"`."""
    attrs = {
        "name": "plant",
        "influx": {"url": "http://127.0.0.1:8086", "database": "plant", "version": written},
        "measurements": [{"name": "m"}],
        "partitions": {"start": "2024-03-01", "granularity": "hourly"},
    }
    with load_yaml_component(attrs) as (component, _defs):
        server = component.ingest_plan().server
        assert server is not None and server.reader.version == version
