"""Bucket arithmetic aligned like TimescaleDB's `time_bucket(interval, timestamptz)`.

Buckets are aligned to the origin 2000-01-03 00:00 UTC (a Monday), so that
`date_bin(width, ts, origin)` on plain PostgreSQL gives the same buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
"""TimescaleDB's default `time_bucket` origin for intervals without months."""


def micros(delta: timedelta) -> int:
    """A duration in whole microseconds, exactly (no float rounding)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def is_multiple(wide: timedelta, narrow: timedelta) -> bool:
    return micros(wide) % micros(narrow) == 0


def floor_to_bucket(moment: datetime, width: timedelta) -> datetime:
    """Start of the bucket of `width` that contains `moment` (TimescaleDB alignment)."""
    offset = micros(moment - BUCKET_ORIGIN) // micros(width)
    return BUCKET_ORIGIN + offset * width


def ceil_to_bucket(moment: datetime, width: timedelta) -> datetime:
    start = floor_to_bucket(moment, width)
    return start if start == moment else start + width
