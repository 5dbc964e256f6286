"""Soak: a backfill of 300 hourly partitions as one run, in bounded memory, every hour exact."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.reliability import children
from data_platform_tests.reliability.support import T0, device_lines, source_attrs, write_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOURS = 300
SERIES = 10
POINTS_PER_HOUR = 100  # per series, with two fields: 2 000 values an hour, 600 000 in all


def partition_key(hour: int) -> str:
    return (T0 + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def backfill(attrs: dict[str, Any], warehouse_url: str, hours: int) -> int:
    """Peak RSS (KiB) of a fresh process while it runs partitions [0, hours) as one run."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        outcome = pool.submit(
            children.backfill_peak_rss,
            attrs,
            warehouse_url,
            (partition_key(0), partition_key(hours - 1)),
        ).result(timeout=300)
    assert outcome["success"], f"the {hours}-partition backfill failed"
    assert outcome["partitions"] == hours
    assert outcome["reconciled"] == [True]
    print(
        f"{hours} partitions: RSS {outcome['before_kib']} KiB before, {outcome['peak_kib']} KiB peak"
    )
    return outcome["peak_kib"]


def source_counts_per_hour(server: LocalInfluxd, db: str) -> dict[tuple[datetime, str], int]:
    end = T0 + timedelta(hours=HOURS)
    body = server.query(
        'SELECT count("p"), count("n") FROM "m" '
        f"WHERE time >= '{T0.isoformat()}' AND time < '{end.isoformat()}' GROUP BY time(1h)",
        db=db,
    )
    counts: dict[tuple[datetime, str], int] = {}
    for series in json.loads(body)["results"][0]["series"]:
        for stamp, count_p, count_n in series["values"]:
            hour = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            counts[(hour, "p")], counts[(hour, "n")] = count_p, count_n
    return counts


def warehouse_counts_per_hour(url: str) -> dict[tuple[datetime, str], int]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            "SELECT date_trunc('hour', h.ts), t.field, count(*) FROM raw.influx_hist h "
            "JOIN raw.influx_tag t USING (tag_id) GROUP BY 1, 2"
        ).fetchall()
    return {(hour, field): count for hour, field, count in rows}


def test_backfill_of_300_partitions_in_one_run(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str
) -> None:
    write_lines(
        influxd,
        influx_db,
        device_lines(series=SERIES, points=POINTS_PER_HOUR * HOURS, span=timedelta(hours=HOURS)),
    )
    attrs = source_attrs(influxd.url, influx_db, influx={"chunk_size": 10_000})

    # The same work for a tenth of the range first: memory must not grow with the range.
    short_kib = backfill(attrs, warehouse_url, HOURS // 10)
    long_kib = backfill(attrs, warehouse_url, HOURS)
    assert long_kib / short_kib <= 1.3, f"peak RSS {short_kib} KiB -> {long_kib} KiB"

    stored = warehouse_counts_per_hour(warehouse_url)
    source = source_counts_per_hour(influxd, influx_db)
    assert len(source) == 2 * HOURS
    assert all(count == SERIES * POINTS_PER_HOUR for count in source.values())
    missing = {hour: count for hour, count in source.items() if stored.get(hour) != count}
    assert not missing, f"{len(missing)} hours differ, e.g. {sorted(missing)[:3]}"
    assert stored.keys() == source.keys()
