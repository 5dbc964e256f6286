"""Shared pieces of the reliability tests: sample data, warehouse snapshots, fault hooks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from data_platform.lib.influx.reader.client import InfluxClient
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.timing.window import Window, to_epoch_ns
from data_platform.utils.local_servers import LocalInfluxd, LocalPostgres

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = Window(T0, T0 + timedelta(hours=1))
PARTITION = "2024-03-01-00:00"
NS = 1_000_000_000
SECRET = "S3cr3t-canary-pw"


def ns(moment: datetime) -> int:
    return to_epoch_ns(moment)


def device_lines(
    *,
    series: int,
    points: int,
    start: datetime = T0,
    span: timedelta = timedelta(hours=1),
    offset: float = 0.0,
    measurement: str = "m",
) -> list[str]:
    """`points` evenly spaced points of each of `series` devices in [start, start + span).

    Two fields: a float `p` (shifted by `offset`, so a second write of the same points is
    distinguishable) and an integer `n`.
    """
    step = int(span.total_seconds() * NS) // points
    first = ns(start)
    return [
        f"{measurement},device=d{s:05d} p={i * 0.5 + offset},n={i}i {first + i * step}"
        for s in range(series)
        for i in range(points)
    ]


def write_lines(server: LocalInfluxd, db: str, lines: Sequence[str], batch: int = 50_000) -> None:
    for i in range(0, len(lines), batch):
        server.write_lines(db, "\n".join(lines[i : i + batch]))


def source_attrs(
    url: str, db: str, *, name: str = "plant", schema: str = "raw", **overrides: Any
) -> dict[str, Any]:
    """YAML attributes of a server source reading measurement `m` in hourly windows."""
    attrs: dict[str, Any] = {
        "name": name,
        "influx": {"url": url, "database": db, "chunk_size": 100},
        "measurements": [{"name": "m"}],
        "target": {"schema": schema},
        "partitions": {"start": "2024-03-01", "granularity": "hourly"},
        "automation": {"ingest": "none", "registry_cron": None},
        "max_attempts": 1,
        "retry_backoff_seconds": 0.05,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(attrs.get(key), dict):
            attrs[key] = {**attrs[key], **value}
        else:
            attrs[key] = value
    return attrs


def asset(name: str = "m", source: str = "plant") -> dg.AssetKey:
    return dg.AssetKey([source, name])


def hist_rows(url: str, schema: str = "raw", table: str = "influx_hist") -> list[tuple[Any, ...]]:
    """Every stored value with its signal's name, in a stable order."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT t.tag_name, h.ts, h.value, h.value_text, h.qc, h.meta FROM {} h "
                "JOIN {} t USING (tag_id) ORDER BY 1, 2"
            ).format(sql.Identifier(schema, table), sql.Identifier(schema, "influx_tag"))
        ).fetchall()


def warehouse_field_totals(
    url: str, window: Window, schema: str = "raw", source: str = "plant"
) -> dict[str, tuple[int, float]]:
    """Per field: stored rows and the sum of their values in the window."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT t.field, count(*), coalesce(sum(h.value), 0) FROM {} h "
                "JOIN {} t USING (tag_id) WHERE t.source = %s AND h.ts >= %s AND h.ts < %s "
                "GROUP BY t.field"
            ).format(sql.Identifier(schema, "influx_hist"), sql.Identifier(schema, "influx_tag")),
            [source, window.start, window.end],
        ).fetchall()
    return {field: (int(count), float(total)) for field, count, total in rows}


def influx_field_totals(
    server: LocalInfluxd, db: str, window: Window, measurement: str = "m"
) -> dict[str, tuple[int, float]]:
    """Per field of `p` and `n`: the source's count and sum in the window."""
    where = f"time >= {window.start_ns}ns AND time < {window.end_ns}ns"
    body = server.query(
        f'SELECT count("p"), sum("p"), count("n"), sum("n") FROM "{measurement}" WHERE {where}',
        db=db,
    )
    series = json.loads(body)["results"][0].get("series") or []
    if not series:
        return {}
    _time, count_p, sum_p, count_n, sum_n = series[0]["values"][0]
    return {"p": (count_p, float(sum_p)), "n": (count_n, float(sum_n))}


def assert_window_is_the_source(
    server: LocalInfluxd, db: str, warehouse_url: str, window: Window = HOUR
) -> None:
    """The warehouse holds exactly the source's window: same count and sum per field."""
    stored = warehouse_field_totals(warehouse_url, window)
    source = influx_field_totals(server, db, window)
    assert stored.keys() == source.keys()
    for field, (count, total) in source.items():
        assert stored[field][0] == count, field
        assert stored[field][1] == pytest.approx(total, rel=1e-12), field


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The step failures of a run: each error's message and its chain of causes."""
    parts: list[str] = []
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error  # type: ignore[union-attr]
        while error is not None:
            parts.append(error.message)
            error = error.cause
    assert parts, "the run has no step failure"
    return "\n".join(parts)


def on_stream(
    monkeypatch: pytest.MonkeyPatch,
    after_batches: int,
    action: Callable[[], None],
    *,
    pause_s: float = 0.0,
) -> list[int]:
    """Run `action` once the first window stream from InfluxDB has yielded `after_batches`.

    The server and the HTTP stream stay real; only the reader's iterator is wrapped. After the
    action, each further batch of that stream waits `pause_s` (a slower consumer). Returns a
    list that records, per stream opened, how many batches it yielded.
    """
    yielded: list[int] = []
    for name in ("stream_window", "stream_window_columns"):  # rows, or columns as a run reads
        original = getattr(InfluxClient, name)

        def stream_window(
            self: InfluxClient, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Iterator[SeriesBatch]:
            index = len(yielded)
            yielded.append(0)
            for batch in _original(self, *args, **kwargs):
                yielded[index] += 1
                if index == 0 and yielded[index] == after_batches:
                    action()
                elif index == 0 and yielded[index] > after_batches and pause_s:
                    time.sleep(pause_s)
                yield batch

        monkeypatch.setattr(InfluxClient, name, stream_window)
    return yielded


def restart_postgres(server: LocalPostgres) -> None:
    """Restart as a failover or `systemctl restart` does: sessions are terminated, not awaited.

    (`LocalPostgres.restart` sends SIGTERM, a smart shutdown that waits for every client, so
    it cannot interrupt a session in the middle of a COPY.)
    """
    server.stop()  # `pg_ctl stop`, fast mode: open transactions are rolled back
    server.start()


def copied_rows(url: str) -> int:
    """Rows the COPY in progress on the server has received so far (0 without one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy"
        ).fetchone()
    return int(row[0]) if row else 0
