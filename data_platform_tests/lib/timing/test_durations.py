"""Durations (one grammar, short and long forms) and bucket alignment (origin 2000-01-03 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from data_platform.lib.timing.durations import (
    format_interval,
    parse_duration,
    short_suffix,
)
from data_platform.lib.timing.errors import SettingError
from data_platform.lib.timing.window import Window


@pytest.mark.parametrize(
    ("text", "width", "canonical", "suffix"),
    [
        ("1 minute", timedelta(minutes=1), "1 minute", "1m"),
        ("5 minutes", timedelta(minutes=5), "5 minutes", "5m"),
        ("15m", timedelta(minutes=15), "15 minutes", "15m"),
        ("1h", timedelta(hours=1), "1 hour", "1h"),
        ("1 hour 30 minutes", timedelta(minutes=90), "1 hour 30 minutes", "90m"),
        ("01:30:00", timedelta(minutes=90), "1 hour 30 minutes", "90m"),
        ("1d", timedelta(days=1), "1 day", "1d"),
        ("1 week", timedelta(days=7), "7 days", "1w"),
        ("INTERVAL '30 seconds'", timedelta(seconds=30), "30 seconds", "30s"),
    ],
)
def test_interval_text(text: str, width: timedelta, canonical: str, suffix: str) -> None:
    assert parse_duration(text) == width
    assert format_interval(width) == canonical
    assert parse_duration(canonical) == width
    assert short_suffix(width) == suffix


@pytest.mark.parametrize(
    "text", ["1 month", "2 years", "5", "1 fortnight", "0 minutes", "", "1 h x"]
)
def test_refused_interval_text(text: str) -> None:
    with pytest.raises(SettingError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("01:30", timedelta(minutes=90)),
        ("5 minutes", timedelta(minutes=5)),
        ("1 hour 30 minutes", timedelta(minutes=90)),
        ("0.5 days", timedelta(hours=12)),
        ("3 hrs", timedelta(hours=3)),
    ],
)
def test_short_and_long_forms_are_one_grammar(text: str, width: timedelta) -> None:
    assert parse_duration(text) == width


def test_refusals_name_the_field_and_the_fix() -> None:
    with pytest.raises(SettingError) as info:
        parse_duration("soon", ("checks", "max_lag"))
    assert str(info.value).startswith("checks.max_lag: 'soon' is not a duration. Fix: write")
    assert info.value.path == ("checks", "max_lag")
    with pytest.raises(SettingError, match="calendar months"):
        parse_duration("1 month", ("partitions", "lateness"))
    with pytest.raises(SettingError, match="not a positive duration"):
        parse_duration("0s")
    assert parse_duration("0", allow_zero=True) == timedelta()
    assert parse_duration(0, allow_zero=True) == timedelta()


def test_windows_widen_to_buckets_on_the_timescaledb_origin() -> None:
    hour = Window(datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC))
    assert hour.widened_to(timedelta(minutes=1)) == hour
    # 2024-01-01 is 8764 days after 2000-01-03: a multiple of 7 hours, not of 7 days.
    assert hour.widened_to(timedelta(hours=7)) == Window(
        datetime(2024, 1, 1, 7, tzinfo=UTC), datetime(2024, 1, 1, 14, tzinfo=UTC)
    )
    # Weeks start on Mondays like TimescaleDB's (2024-01-01 is a Monday).
    assert hour.widened_to(timedelta(days=7)) == Window(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)
    )
    assert Window(hour.start, hour.start + timedelta(hours=50)).slices(timedelta(days=1)) == [
        Window(hour.start, hour.start + timedelta(days=1)),
        Window(hour.start + timedelta(days=1), hour.start + timedelta(days=2)),
        Window(hour.start + timedelta(days=2), hour.start + timedelta(hours=50)),
    ]
