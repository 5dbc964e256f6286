"""Shared by the server reader's tests: a client for a URL, and batches compared by type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from data_platform.lib.influx.reader.client import InfluxClient
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.settings import Credentials, InfluxSettings
from data_platform.lib.timing.window import Window

FORMATS = ("msgpack", "json", "csv")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_NS = 1_704_067_200_000_000_000
SECOND = 1_000_000_000
EVERYTHING = Window(T0 - timedelta(days=365), T0 + timedelta(days=365))
CREDENTIALS = ("username", "password", "token")


def client_for(
    url: str, database: str, *, source: str = "plant_test", **settings: Any
) -> InfluxClient:
    retry = {"max_retries": settings.pop("max_retries", 1), "backoff_s": 0.01}
    credentials = Credentials(**{k: settings.pop(k) for k in CREDENTIALS if k in settings})
    return InfluxClient(
        InfluxSettings(url=url, database=database, **settings),
        credentials,
        source=source,
        **retry,
    )


def read_all(
    client: InfluxClient, measurement: str, window: Window = EVERYTHING, **kw: Any
) -> list[SeriesBatch]:
    chunk_size = kw.pop("chunk_size", None)
    return list(client.stream_window(SeriesQuery(measurement, window, **kw), chunk_size=chunk_size))


def typed(batches: list[SeriesBatch]) -> list[tuple[Any, ...]]:
    """Batches with each value's type, so 2 and 2.0 (or 1 and True) do not compare equal."""
    return [
        (b.measurement, b.tags, b.columns, [[(type(v).__name__, v) for v in row] for row in b.rows])
        for b in batches
    ]
