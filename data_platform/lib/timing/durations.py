"""Durations in YAML: one grammar for every field that takes one.

Short form `90s`, `15m`, `1.5h`, `2d`, `1w`; long form `5 minutes`, `1 hour 30 minutes`,
PostgreSQL's `interval '30 seconds'`, or a clock `01:30` (`01:30:00`). Months and years are
refused: their length varies, and neither TimescaleDB's hierarchical buckets nor PostgreSQL's
`date_bin` accept them.
"""

from __future__ import annotations

import re
from datetime import timedelta

from data_platform.lib.timing.buckets import micros as _micros
from data_platform.lib.timing.errors import SettingError, YamlPath

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
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(\d+):(\d{2})(?::(\d{2}))?$")
_ZERO = re.compile(r"^0+\s*[a-z]*$")

EXAMPLES = "'30s', '1 minute', '5 minutes', '1.5h', '1 hour 30 minutes' or '01:30'"
FIX = f"write a number and a unit, e.g. {EXAMPLES}"


def parse_duration(
    value: str | int | float, path: YamlPath = (), *, allow_zero: bool = False
) -> timedelta:
    """A positive fixed-length duration (zero too with `allow_zero`); SettingError otherwise."""
    if allow_zero and _ZERO.match(str(value).strip().lower()):
        return timedelta()
    if isinstance(value, bool) or not isinstance(value, str):
        raise SettingError(path, f"{value!r} is not a duration (no unit)", FIX)
    text = value.strip().lower()
    if text.startswith("interval "):
        text = text[len("interval ") :].strip().strip("'")
    if not text:
        raise SettingError(path, "the duration is empty", FIX)
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    else:
        total = timedelta()
        position = 0
        for match in _PART.finditer(text):
            if text[position : match.start()].strip(" ,"):
                break
            number, unit = match.group(1), _unit(match.group(2), value, path)
            total += (float(number) if "." in number else int(number)) * _UNITS[unit]
            position = match.end()
        if position == 0 or text[position:].strip(" ,"):
            raise SettingError(path, f"{value!r} is not a duration", FIX)
    if total <= timedelta():
        raise SettingError(path, f"{value!r} is not a positive duration", FIX)
    return total


def _unit(word: str, value: str, path: YamlPath) -> str:
    if word in _CALENDAR_UNITS:
        raise SettingError(
            path,
            f"{value!r} uses calendar months or years, whose length varies",
            "write a fixed duration in days or weeks instead (e.g. '30 days')",
        )
    if word in _ALIASES:
        return _ALIASES[word]
    singular = word[:-1] if word.endswith("s") else word
    if singular in _UNITS:
        return singular
    raise SettingError(
        path,
        f"{value!r}: unknown unit {word!r}",
        f"use seconds, minutes, hours, days or weeks: {FIX}",
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
