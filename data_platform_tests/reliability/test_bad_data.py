"""Bad data at the source: every value is stored as written, quarantined, or refused clearly.

Nothing may crash without a message, and nothing may be dropped without being reported.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import replace_window
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.source import LineProtocolSource
from data_platform.lib.timing.window import Window
from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.helpers import (
    check_results,
    load_yaml_component,
    materializations,
    run_assets,
)
from data_platform_tests.reliability import children
from data_platform_tests.reliability.support import (
    HOUR,
    NS,
    PARTITION,
    T0,
    asset,
    failure_text,
    hist_rows,
    ns,
    source_attrs,
    write_lines,
)

pytestmark = pytest.mark.integration


def files_attrs(*paths: Path, on_error: str = "fail", **overrides: Any) -> dict[str, Any]:
    attrs = source_attrs("http://127.0.0.1:1", "unused", **overrides)
    del attrs["influx"]
    attrs["files"] = {"paths": [str(p) for p in paths], "on_error": on_error}
    return attrs


def run_partition(
    attrs: dict[str, Any],
    warehouse_url: str,
    partition: str = PARTITION,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    with load_yaml_component(attrs) as (_component, defs):
        return run_assets(
            defs, warehouse_url, partition_key=partition, raise_on_error=False, instance=instance
        )


def stored(url: str, field: str | None = None) -> list[tuple[Any, ...]]:
    """(tag_name, ts, value, value_text) of the stored rows, optionally of one field."""
    return [
        (name, ts, value, text)
        for name, ts, value, text, _qc, _meta in hist_rows(url)
        if field is None or name.endswith(f".{field}")
    ]


def reconciled(result: dg.ExecuteInProcessResult, key: str = "plant/m") -> bool:
    return check_results(result)[(key, "reconciliation")].passed


# -- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire_format", ["msgpack", "json", "csv"])
def test_field_with_two_types_across_shards(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, wire_format: str
) -> None:
    """`p` is a float before Monday 2024-03-04 and a string after: InfluxDB keeps one type per
    shard (weekly, from Monday), and the run's window (with lateness) reads both shards.

    A plain `SELECT *` returns the floats only (InfluxDB 1.x picks one type per query), and
    `count(*)` counts only them, so reconciliation alone would not notice the loss.
    """
    monday = datetime(2024, 3, 4, tzinfo=UTC)
    before, after = monday - timedelta(minutes=30), monday + timedelta(minutes=30)
    influxd.write_lines(influx_db, f"m,device=a p=1.5 {ns(before)}")
    influxd.write_lines(influx_db, f'm,device=a p="tripped" {ns(after)}')
    attrs = source_attrs(
        influxd.url, influx_db, influx={"format": wire_format}, partitions={"lateness": "1h"}
    )
    result = run_partition(attrs, warehouse_url, "2024-03-04-00:00")
    assert result.success
    assert stored(warehouse_url) == [
        ("plant/m,device=a.p", before, 1.5, None),
        ("plant/m,device=a.p", after, None, "tripped"),
    ]
    assert reconciled(result)
    drift = check_results(result)[("plant/m", "schema_drift")]
    assert not drift.passed
    assert drift.metadata["fields_with_several_types"].value == [
        {"measurement": "m", "field": "p", "types": "float,string"}
    ]


def test_field_with_two_types_in_files(tmp_path: Path, warehouse_url: str) -> None:
    export = tmp_path / "m.lp"
    t = ns(T0)
    export.write_text(
        f"m,device=a p=1.5 {t}\nm,device=a p=2i {t + NS}\nm,device=a p=t {t + 2 * NS}\n"
    )
    result = run_partition(files_attrs(export), warehouse_url)
    assert result.success
    assert [row[2:] for row in stored(warehouse_url)] == [(1.5, None), (2.0, None), (1.0, None)]
    assert reconciled(result)
    assert not check_results(result)[("plant/m", "schema_drift")].passed


# -- NaN, infinities and malformed lines ------------------------------------------------------

NOT_FINITE = ["NaN", "-nan", "+Inf", "-inf", "Infinity"]


def write_export(path: Path, bad: list[str]) -> Path:
    """Valid points a minute apart, with each `bad` line after the first two."""
    t = ns(T0)
    lines = [f"m,device=a p={i}.5 {t + i * 60 * NS}" for i in range(5)]
    path.write_text("\n".join(lines[:2] + bad + lines[2:]) + "\n")
    return path


@pytest.mark.parametrize("token", NOT_FINITE)
def test_not_finite_value_in_files_is_refused_with_file_and_line(
    tmp_path: Path, warehouse_url: str, token: str
) -> None:
    export = write_export(tmp_path / "plant.lp", [f"m,device=a p={token} {ns(T0) + 5 * NS}"])
    result = run_partition(files_attrs(export), warehouse_url)
    assert not result.success
    text = failure_text(result)
    assert f"{export}, line 3" in text and "field 'p'" in text
    assert "NaN" in text or "infinities" in text


def test_skipped_lines_are_counted_and_reported(tmp_path: Path, warehouse_url: str) -> None:
    t = ns(T0) + 5 * NS
    bad = [
        f"m,device=a p=NaN {t}",
        f"m,device=a p=-Inf {t}",
        f"m,device=a p=1.2.3 {t}",
        f'm,device=a s="unterminated {t}',
        "m,device=a p=1 not-a-time",
    ]
    export = write_export(tmp_path / "plant.lp", bad)
    strict = run_partition(files_attrs(export), warehouse_url)
    assert not strict.success and f"{export}, line 3" in failure_text(strict)

    instance = dg.DagsterInstance.ephemeral()
    result = run_partition(files_attrs(export, on_error="skip"), warehouse_url, instance=instance)
    assert result.success
    assert len(stored(warehouse_url)) == 5  # every valid point
    meta = materializations(result)[asset()]
    assert meta["skipped_lines"] == len(bad)
    assert f"{export}, line 3" in meta["skipped_line_examples"][0]
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("5 malformed line(s)" in m and f"{export}, line 3" in m for m in logs)
    assert reconciled(result)


def test_not_finite_floats_from_other_sources_are_stored_as_written(
    pg_conn: psycopg.Connection,
) -> None:
    """InfluxDB 1.x cannot hold NaN or infinities, other sources can: double precision keeps
    them, so a reader that yields them is stored faithfully (rollups then see them too)."""
    tables = HistorianTables(schema="raw")
    ensure_tables(pg_conn, tables)
    registry = SignalRegistry("other", tables, Signal.default_name)
    values = [math.nan, math.inf, -math.inf, 0.0]
    batch = SeriesBatch(
        "m", (("device", "a"),), ("p",), [[ns(T0) + i * NS, v] for i, v in enumerate(values)]
    )
    with psycopg.connect(pg_conn.info.dsn, autocommit=True) as reg_conn:
        write = replace_window(
            pg_conn,
            registry,
            HOUR,
            [batch],
            delete_tag_ids=lambda: [],
            register_conn=reg_conn,
        )
    assert write.rows == 4
    got = [row[0] for row in pg_conn.execute("SELECT value FROM raw.influx_hist ORDER BY ts")]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 0.0]


# -- strings, duplicates, order ---------------------------------------------------------------


@pytest.mark.parametrize("wire_format", ["msgpack", "json", "csv"])
def test_empty_strings(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, wire_format: str
) -> None:
    t = ns(T0)
    influxd.write_lines(influx_db, f'm,device=a s="" {t}\nm,device=a s="x" {t + NS}')
    result = run_partition(
        source_attrs(influxd.url, influx_db, influx={"format": wire_format}), warehouse_url
    )
    assert result.success
    texts = [row[3] for row in stored(warehouse_url)]
    if wire_format == "csv":
        # CSV cannot tell an empty string from a missing value: the value is not stored, and
        # reconciliation reports the shortfall instead of passing.
        assert texts == ["x"]
        check = check_results(result)[("plant/m", "reconciliation")]
        assert not check.passed
        assert check.metadata["mismatches"].value == [
            {"measurement": "m", "field": "s", "problem": "1 rows stored, 2 at the source"}
        ]
    else:
        assert texts == ["", "x"]
        assert reconciled(result)


def test_duplicate_and_out_of_order_points_in_files(tmp_path: Path, warehouse_url: str) -> None:
    """Points come out sorted; a point written twice keeps the later line's values per field,
    and a second file overrides the first."""
    t = ns(T0)
    first = tmp_path / "a.lp"
    first.write_text(
        f"m,device=a p=3 {t + 3 * NS}\n"
        f"m,device=a p=1,n=1i {t + NS}\n"
        f"m,device=a p=2 {t + 2 * NS}\n"
        f"m,device=a p=10 {t + NS}\n"  # the same point again: p=10 wins, n=1 stays
    )
    second = tmp_path / "b.lp"
    second.write_text(f"m,device=a p=30 {t + 3 * NS}\n")
    result = run_partition(files_attrs(tmp_path / "*.lp"), warehouse_url)
    assert result.success
    values = {(name.rsplit(".", 1)[1], ts): value for name, ts, value, _ in stored(warehouse_url)}
    second_ = timedelta(seconds=1)
    assert values == {
        ("n", T0 + second_): 1.0,
        ("p", T0 + second_): 10.0,
        ("p", T0 + 2 * second_): 2.0,
        ("p", T0 + 3 * second_): 30.0,
    }
    assert reconciled(result)


# -- time range -------------------------------------------------------------------------------


def test_points_before_1970(influxd: LocalInfluxd, influx_db: str, warehouse_url: str) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    points = [epoch - timedelta(minutes=30), epoch - timedelta(microseconds=1, seconds=1)]
    # -1.5 us after the epoch's last minute: PostgreSQL keeps -2 us, meta.ns the 500 ns.
    influxd.write_lines(
        influx_db,
        "\n".join(f"m,device=a p={i} {ns(p)}" for i, p in enumerate(points))
        + f"\nm,device=a p=9 {-1500}",
    )
    attrs = source_attrs(influxd.url, influx_db, partitions={"start": "1969-12-31"})
    result = run_partition(attrs, warehouse_url, "1969-12-31-23:00")
    assert result.success
    rows = [(ts, value, meta) for _n, ts, value, _t, _qc, meta in hist_rows(warehouse_url)]
    assert rows == [
        (points[0], 0.0, None),
        (points[1], 1.0, None),
        (epoch - timedelta(microseconds=2), 9.0, {"ns": 500}),
    ]
    assert reconciled(result)


def test_points_in_year_2200(
    tmp_path: Path, pg_conn: psycopg.Connection, warehouse_url: str
) -> None:
    """A clock far ahead: the point is stored at its time when its window is read, and the
    windows of today's partitions are not disturbed by it."""
    future = datetime(2200, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    export = tmp_path / "m.lp"
    export.write_text(f"m,device=a p=1 {ns(T0)}\nm,device=a p=2200 {ns(future)}\n")

    result = run_partition(files_attrs(export), warehouse_url)
    assert result.success and reconciled(result)
    assert [row[1:3] for row in stored(warehouse_url)] == [(T0, 1.0)]

    tables = HistorianTables(schema="raw")
    window = Window(datetime(2200, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, 1, tzinfo=UTC))
    registry = SignalRegistry("plant", tables, Signal.default_name)
    source = LineProtocolSource(str(export))
    with psycopg.connect(warehouse_url, autocommit=True) as reg_conn:
        write = replace_window(
            pg_conn,
            registry,
            window,
            source.stream_window(SeriesQuery("m", window)),
            delete_tag_ids=lambda: [],
            register_conn=reg_conn,
        )
    assert write.rows == 1
    assert [row[1:3] for row in stored(warehouse_url)] == [(T0, 1.0), (future, 2200.0)]


# -- cardinality ------------------------------------------------------------------------------


def test_twenty_thousand_series_in_one_window(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str
) -> None:
    """20 k series (3 points each) in one window: the run completes, every value is stored, and
    the run process grows by a bounded amount (the registry of 20 k signals, not the points)."""
    series, points = 20_000, 3
    t = ns(T0)
    write_lines(
        influxd,
        influx_db,
        [
            f"m,device=d{s:05d},site=s{s % 7} p={s}.{i} {t + i * 600 * NS + s * 1000}"
            for s in range(series)
            for i in range(points)
        ],
    )
    attrs = source_attrs(influxd.url, influx_db, influx={"chunk_size": 10_000})
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        outcome = pool.submit(children.partition_peak_rss, attrs, warehouse_url, PARTITION).result(
            timeout=240
        )
    assert outcome["success"]
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM raw.influx_hist").fetchone() == (series * points,)
        assert conn.execute("SELECT count(*) FROM raw.influx_tag").fetchone() == (series,)
    grown_mib = (outcome["peak_kib"] - outcome["before_kib"]) / 1024
    assert grown_mib < 250, f"the run grew by {grown_mib:.0f} MiB"
