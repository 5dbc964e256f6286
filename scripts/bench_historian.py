"""The historian's write path alone: values/s of replace_window into an embedded PostgreSQL.

Fills the value table with `--history` daily windows of 100 series x 3 float fields (about
1 M values each), then replaces one more window through `replace_window` (registry, row
checks, binary COPY encoding, window lock) several times with each encoder and sending variant
(interleaved, so the shared machine's load falls on all alike), and prints median and best wall
time, the client's CPU time (the rest is the server), and a per-signal time-range query.

    uv run python scripts/bench_historian.py [--points 3334] [--runs 5] [--history 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from data_platform.lib.historian import copy, vectors
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import WindowLock, replace_window
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.timing.window import Window
from data_platform.utils.local_servers import start_postgres

START = datetime(2024, 5, 1, tzinfo=UTC)
NS = 1_000_000_000
SERIES = 100
CHUNK = 10_000


def batches(points: int, day: datetime = START) -> list[SeriesBatch]:
    t0 = int(day.timestamp()) * NS
    return [
        SeriesBatch(
            "plant",
            (("device", f"d{s}"),),
            ("p", "q", "t"),
            [
                [t0 + i * 10 * NS, i * 0.5, float(i % 97), 20.0 + i % 50]
                for i in range(c, min(points, c + CHUNK))
            ],
        )
        for s in range(SERIES)
        for c in range(0, points, CHUNK)
    ]


VARIANTS = {
    "numpy + send thread": (8, vectors.MIN_ROWS),
    "numpy, send inline": (0, vectors.MIN_ROWS),
    "per value + send thread": (8, 1 << 62),
    "per value, send inline (before)": (0, 1 << 62),
}
"""Encoder and sending variants: (copy.SEND_AHEAD, vectors.MIN_ROWS)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--points", type=int, default=3334, help="points per series")
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant, interleaved")
    parser.add_argument(
        "--history", type=int, default=10, help="windows of other days in the table first"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-historian-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "xdg"))
    server = start_postgres(root / "data", cleanup_mode="delete")
    tables = HistorianTables("bench")
    lock = WindowLock("bench/plant", timedelta(days=1))
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
    queries: list[float] = []
    values = 0
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    try:
        url = server.create_database("bench")
        with psycopg.connect(url) as conn, psycopg.connect(url, autocommit=True) as reg_conn:
            ensure_tables(conn, tables)
            conn.commit()
            registry = SignalRegistry("bench", tables, Signal.default_name)

            def write(day: int, data: list[SeriesBatch]) -> int:
                window = Window(START + timedelta(days=day), START + timedelta(days=day + 1))
                return replace_window(
                    conn,
                    registry,
                    window,
                    data,
                    delete_tag_ids=lambda: [s.tag_id for s in registry.load(reg_conn)],
                    register_conn=reg_conn,
                    lock=lock,
                ).rows

            for day in range(1, args.history + 1):
                write(day, batches(args.points, START + timedelta(days=day)))
                conn.commit()
            conn.execute("ANALYZE bench.influx_hist")
            for _ in range(args.runs):
                for name, (ahead, min_rows) in VARIANTS.items():
                    copy.SEND_AHEAD, vectors.MIN_ROWS = ahead, min_rows
                    data = batches(args.points)
                    started, cpu = time.perf_counter(), time.process_time()
                    values = write(0, data)  # replaces day 0's rows: delete, then COPY
                    conn.commit()
                    walls[name].append(time.perf_counter() - started)
                    cpus[name].append(time.process_time() - cpu)
                    queries.append(range_query(conn, registry))
    finally:
        server.stop()
    print(
        f"{values:,} values per window, table holding {args.history + 1} windows, "
        f"{args.runs} runs of each variant (window replaced each time)"
    )
    for name in VARIANTS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"  {name:<32} wall median {wall:.2f} s ({values / wall:,.0f} values/s), "
            f"best {min(walls[name]):.2f} s; client CPU median {cpu:.2f} s"
        )
    print(
        f"  one signal's hour (count, avg) on the {args.history + 1}-window table: "
        f"median {statistics.median(queries) * 1000:.1f} ms"
    )


def range_query(conn: psycopg.Connection, registry: SignalRegistry) -> float:
    """A per-signal time-range query, as rollups and users ask it."""
    tag_id = min(s.tag_id for s in registry.load(conn))
    started = time.perf_counter()
    conn.execute(
        "SELECT count(*), avg(value) FROM bench.influx_hist WHERE tag_id = %s "
        "AND ts >= %s AND ts < %s",
        [tag_id, START + timedelta(hours=5), START + timedelta(hours=6)],
    ).fetchone()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
