"""Interval text as PostgreSQL writes it (`1 minute`, `5 minutes`, `1 day`)."""

from __future__ import annotations

import re
from datetime import timedelta

from data_platform.lib.timing.buckets import micros as _micros

_UNITS: dict[str, timedelta] = {
    "microsecond": timedelta(microseconds=1),
    "millisecond": timedelta(milliseconds=1),
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
_ALIASES: dict[str, str] = {
    "us": "microsecond",
    "usec": "microsecond",
    "usecs": "microsecond",
    "ms": "millisecond",
    "msec": "millisecond",
    "msecs": "millisecond",
    "s": "second",
    "sec": "second",
    "secs": "second",
    "m": "minute",
    "min": "minute",
    "mins": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "d": "day",
    "w": "week",
}
_CALENDAR_UNITS = {"month", "months", "mon", "mons", "year", "years", "y", "yr", "yrs"}
_PART = re.compile(r"(\d+)\s*([a-z]+)")
_CLOCK = re.compile(r"^(\d+):(\d{2})(?::(\d{2}))?$")


class IntervalError(ValueError):
    """Interval text that cannot be read as a fixed-length duration."""


def parse_interval(text: str | int | float) -> timedelta:
    """Read `1 minute`, `5 minutes`, `1 hour 30 minutes`, `15m`, `1h`, `1d`, `01:30:00`.

    Months and years are refused: their length varies, and neither TimescaleDB's hierarchical
    buckets nor PostgreSQL's `date_bin` accept them.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise IntervalError(f"{text!r} is not interval text; write it like '5 minutes' or '1 hour'")
    normalized = text.strip().lower()
    if normalized.startswith("interval "):
        normalized = normalized[len("interval ") :].strip().strip("'")
    if not normalized:
        raise IntervalError("empty interval; write it like '5 minutes' or '1 hour'")
    clock = _CLOCK.match(normalized)
    if clock:
        hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    else:
        total = timedelta()
        position = 0
        for match in _PART.finditer(normalized):
            if normalized[position : match.start()].strip(" ,"):
                break
            unit = _unit(match.group(2), text)
            total += int(match.group(1)) * _UNITS[unit]
            position = match.end()
        if position == 0 or normalized[position:].strip(" ,"):
            raise IntervalError(
                f"{text!r} is not interval text; write it like '5 minutes', '1 hour' or '1d'"
            )
    if total <= timedelta():
        raise IntervalError(f"{text!r} is not a positive duration")
    return total


def _unit(word: str, text: str) -> str:
    if word in _CALENDAR_UNITS:
        raise IntervalError(
            f"{text!r} uses calendar months or years, whose length varies; "
            "write a fixed duration in days or weeks instead (e.g. '30 days')"
        )
    if word in _ALIASES:
        return _ALIASES[word]
    singular = word[:-1] if word.endswith("s") else word
    if singular in _UNITS:
        return singular
    raise IntervalError(
        f"{text!r}: unknown unit {word!r}; use seconds, minutes, hours, days or weeks"
    )


def format_interval(width: timedelta) -> str:
    """PostgreSQL interval text: `5 minutes`, `1 day`, `14 hours 1 minute`."""
    micros = _micros(width)
    if micros == 0:
        return "0 seconds"
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    parts: list[str] = []
    for unit in ("day", "hour", "minute", "second", "millisecond", "microsecond"):
        size = _micros(_UNITS[unit])
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return sign + " ".join(parts)


def short_suffix(width: timedelta) -> str:
    """A compact name part for a bucket width: `1m`, `15m`, `1h`, `7h`, `1d`, `30s`."""
    micros = _micros(width)
    for unit, letter in (
        ("week", "w"),
        ("day", "d"),
        ("hour", "h"),
        ("minute", "m"),
        ("second", "s"),
        ("millisecond", "ms"),
        ("microsecond", "us"),
    ):
        size = _micros(_UNITS[unit])
        if micros % size == 0:
            return f"{micros // size}{letter}"
    raise AssertionError("unreachable: microseconds divide every interval")
