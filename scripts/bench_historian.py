"""The historian's write path alone: values/s of replace_window into an embedded PostgreSQL.

Writes one daily window of 100 series x 3 float fields (about 1 M values) through
`replace_window` (registry, row checks, binary COPY encoding, window lock) into an emptied
value table, several times, and prints the best and median wall time and the client's CPU
time (the encoding's share; the rest is the server).

    .venv/bin/python scripts/bench_historian.py [--points 3334] [--runs 8]
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


def batches(points: int) -> list[SeriesBatch]:
    t0 = int(START.timestamp()) * NS
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--points", type=int, default=3334, help="points per series")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-historian-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "xdg"))
    server = start_postgres(root / "data", cleanup_mode="delete")
    tables = HistorianTables("bench")
    window = Window(START, START + timedelta(days=1))
    lock = WindowLock("bench/plant", timedelta(days=1))
    walls: list[float] = []
    cpus: list[float] = []
    values = 0
    try:
        url = server.create_database("bench")
        with psycopg.connect(url) as conn, psycopg.connect(url, autocommit=True) as reg_conn:
            ensure_tables(conn, tables)
            conn.commit()
            for _ in range(args.runs):
                conn.execute("TRUNCATE bench.influx_hist")
                conn.commit()
                registry = SignalRegistry("bench", tables, Signal.default_name)
                data = batches(args.points)
                started, cpu = time.perf_counter(), time.process_time()
                write = replace_window(
                    conn,
                    registry,
                    window,
                    data,
                    delete_tag_ids=lambda r=registry: [s.tag_id for s in r.load(reg_conn)],
                    register_conn=reg_conn,
                    lock=lock,
                )
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
                values = write.rows
    finally:
        server.stop()
    best = min(walls)
    print(f"{values:,} values per window, {args.runs} runs")
    print(
        f"  wall: best {best:.2f} s ({values / best:,.0f} values/s), median {statistics.median(walls):.2f} s"
    )
    print(f"  client CPU: best {min(cpus):.2f} s, median {statistics.median(cpus):.2f} s")


if __name__ == "__main__":
    main()
