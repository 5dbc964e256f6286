"""The fast path of the line-protocol parser, and `parse_line`.

Most lines are plain: `LineParser` splits them with str.split and friends and remembers the
series keys it has seen (a file repeats a few thousand keys millions of times). Anything
unusual goes to the careful scanner (`line_protocol.parse_careful`), which accepts the same
lines with the same result and explains the rest.
"""

from __future__ import annotations

import re

from data_platform.lib.influx.reader.line_protocol import (
    BOOLEANS,
    INT_MAX,
    INT_MIN,
    MAX_TIME_NS,
    MIN_TIME_NS,
    PRECISION_NS,
    SKIPPED_FIRST,
    UINT_MAX,
    WHITESPACE,
    Malformed,
    Point,
    located_error,
    parse_careful,
    parse_precision,
    strip_line_end,
    unescape_name,
    unescape_string,
    unescape_tag,
)
from data_platform.lib.influx.reader.model import FieldValue, Tags

# While splitting a line that contains backslashes, every escaped pair is swapped for a
# private-use character, so str.split sees only the unescaped separators. The pairs are put
# back before a name or string is unescaped by the rules of its position.
_ESCAPED_PAIRS = (
    ("\\\\", "\ue000"),
    ("\\,", "\ue001"),
    ("\\ ", "\ue002"),
    ("\\=", "\ue003"),
    ('\\"', "\ue004"),
)
_PLACEHOLDERS = tuple(placeholder for _, placeholder in _ESCAPED_PAIRS)
_ESCAPED_BACKSLASH = _ESCAPED_PAIRS[0][1]
# InfluxDB takes a separator right after `\\` as escaped in keys, but as a separator in
# string values; such lines go to the careful scanner, which knows where it is.
_AMBIGUOUS = re.compile(f"{_ESCAPED_BACKSLASH}[, =]")
_RESTORE = str.maketrans({placeholder: pair for pair, placeholder in _ESCAPED_PAIRS})

_FIELD_START_WHITESPACE = ("\t", "\x00")
_LINE_START_WHITESPACE = (" ", "\t", "\x00")

SERIES_CACHE_LIMIT = 200_000
"""Series keys a parser remembers before it starts over (bounds its memory)."""


def parse_line(line: str, *, precision: str = "ns") -> Point | None:
    """Parse one line of line protocol; `None` for a blank or comment line.

    A line without a timestamp gives a point with `time_ns=None`. Raises `LineProtocolError`
    (without path and line number) for a malformed line.
    """
    scale = PRECISION_NS.get(precision) or parse_precision(precision)
    line = strip_line_end(line)
    if not line or line[0] in SKIPPED_FIRST:
        line = line.lstrip(WHITESPACE)
        if not line or line[0] == "#":
            return None
    try:
        return LineParser(scale).parse(line)
    except Malformed as exc:
        raise located_error(exc, line) from None


class LineParser:
    """Parses lines of one timestamp precision; owns the cache of the series keys it met."""

    __slots__ = ("_escaped_series", "_series", "scale")

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self._series: dict[str, tuple[str, Tags]] = {}
        self._escaped_series: dict[str, tuple[str, Tags]] = {}

    def parse(self, text: str) -> Point:
        """The point of one line (no line ending); raises `Malformed`."""
        point = self.parse_fast(text)
        if point is None:
            point = parse_careful(text, self.scale)
        return point

    def parse_fast(self, line: str) -> Point | None:
        """Parse a well-formed line with str.split and friends; None sends it to the scanner.

        Whatever this accepts, `parse_careful` accepts with the same result; anything unusual
        (extra spaces, malformed values, quotes in keys) is left to the scanner, which also
        explains what is wrong.
        """
        if line[:1] in _LINE_START_WHITESPACE:
            return None
        escaped = "\\" in line
        if escaped:
            if not line.isascii():
                for placeholder in _PLACEHOLDERS:
                    if placeholder in line:
                        return None
            for pair, placeholder in _ESCAPED_PAIRS:
                if pair in line:
                    line = line.replace(pair, placeholder)
            if _ESCAPED_BACKSLASH in line and _AMBIGUOUS.search(line):
                return None
        key, _, rest = line.partition(" ")
        cache = self._escaped_series if escaped else self._series
        series = cache.get(key)
        if series is None:
            series = _split_series_key(key, escaped)
            if series is None:
                return None
            if len(cache) >= SERIES_CACHE_LIMIT:
                cache.clear()
            cache[key] = series

        # An ASCII field set holds no placeholder and no non-ASCII digit float() would take.
        if rest[:1] in _FIELD_START_WHITESPACE:
            return None  # InfluxDB skips more whitespace before the fields
        ascii = rest.isascii()
        escaped = escaped and not ascii
        fields: dict[str, FieldValue] = {}
        field_text, _, stamp = rest.partition(" ")
        unsigned = _add_fields(field_text.split(","), fields, escaped, ascii)
        if unsigned is None:
            # string values with a space or comma need the quotes taken into account
            if '"' not in rest:
                return None
            fields.clear()
            split = _split_quoted_fields(rest, fields, escaped, ascii)
            if split is None:
                return None
            unsigned, stamp = split

        if stamp[-1:] == " ":
            stamp = stamp.rstrip(" ")
        if not stamp:
            return Point(series[0], series[1], fields, None, unsigned)
        if (stamp.isdigit() or (stamp[0] == "-" and stamp[1:].isdigit())) and stamp.isascii():
            time_ns = int(stamp) * self.scale
            if MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                return Point(series[0], series[1], fields, time_ns, unsigned)
        return None


def _split_series_key(key: str, escaped: bool) -> tuple[str, Tags] | None:
    parts = key.split(",")
    measurement = parts[0]
    if not measurement:
        return None
    if escaped:
        measurement = unescape_name(measurement.translate(_RESTORE))
    if len(parts) == 1:
        return measurement, ()
    tags: dict[str, str] = {}
    for part in parts[1:]:
        tag_key, _, tag_value = part.partition("=")
        if not tag_key or not tag_value or "=" in tag_value[1:]:
            return None
        if escaped:
            tag_key = unescape_tag(tag_key.translate(_RESTORE))
            tag_value = unescape_tag(tag_value.translate(_RESTORE))
        tags[tag_key] = tag_value
    if len(tags) != len(parts) - 1:
        return None
    return measurement, tuple(sorted(tags.items()))


def _split_quoted_fields(
    rest: str, fields: dict[str, FieldValue], escaped: bool, ascii: bool
) -> tuple[tuple[str, ...], str] | None:
    """Fields of a line with string values, when every quote opens right after `=` and closes
    right before `,`, a space or the end. Returns (unsigned fields, timestamp text)."""
    segments = rest.split('"')
    last = len(segments) - 1
    if last & 1:
        return None
    unsigned: tuple[str, ...] | None = ()
    for index in range(0, last, 2):
        outside = segments[index]
        if index:
            if outside[:1] != ",":
                return None
            outside = outside[1:]
        if outside[-1:] != "=" or " " in outside:
            return None
        items = outside[:-1].split(",")
        key = items.pop()
        if not key or "=" in key:
            return None
        if items:
            unsigned = _add_fields(items, fields, escaped, ascii, unsigned)
            if unsigned is None:
                return None
        text = segments[index + 1]
        if escaped:
            if not key.isascii():
                key = unescape_name(key.translate(_RESTORE))
            if not text.isascii():
                text = unescape_string(text.translate(_RESTORE))
        fields[key] = text
        if unsigned:
            unsigned = _without(unsigned, key)
    tail = segments[last]
    if not tail:
        return unsigned, ""
    if tail[0] == " ":
        return unsigned, tail[1:]
    if tail[0] != ",":
        return None
    more, _, stamp = tail[1:].partition(" ")
    unsigned = _add_fields(more.split(","), fields, escaped, ascii, unsigned)
    if unsigned is None:
        return None
    return unsigned, stamp


def _add_fields(
    items: list[str],
    fields: dict[str, FieldValue],
    escaped: bool,
    ascii: bool,
    unsigned: tuple[str, ...] = (),
) -> tuple[str, ...] | None:
    """Convert `key=value` items into `fields`; None if one is not plainly valid.

    A string value must be whole in its item (no comma in it). Returns `unsigned` updated
    with the keys whose last value has the `u` suffix.
    """
    for item in items:
        key, _, text = item.partition("=")
        if not key or not text:
            return None
        if escaped and not key.isascii():
            key = unescape_name(key.translate(_RESTORE))
        last = text[-1]
        if "." <= last <= "9":
            try:
                number = float(text)
            except ValueError:
                return None
            # float() also takes `_`, a leading `+`, surrounding whitespace, non-ASCII digits,
            # nan and inf (and overflows to inf); line protocol takes none of them.
            if (
                number - number
                or "_" in text
                or not "-" <= text[0] <= "9"
                or not (ascii or text.isascii())
            ):
                return None
            fields[key] = number
        elif last == '"':
            if len(text) < 2 or text[0] != '"' or '"' in text[1:-1]:
                return None
            text = text[1:-1]
            if escaped and not text.isascii():
                text = unescape_string(text.translate(_RESTORE))
            fields[key] = text
        elif last == "i":
            digits = text[:-1]
            if not (digits.isdigit() or (digits[:1] == "-" and digits[1:].isdigit())) or not (
                ascii or digits.isascii()
            ):
                return None
            integer = int(digits)
            if len(digits) > 18 and not INT_MIN <= integer <= INT_MAX:
                return None
            fields[key] = integer
        elif last == "u":
            digits = text[:-1]
            if not digits.isdigit() or not digits.isascii():
                return None
            integer = int(digits)
            if integer > UINT_MAX:
                return None
            fields[key] = integer
            unsigned = (*_without(unsigned, key), key)
            continue
        else:
            boolean = BOOLEANS.get(text)
            if boolean is None:
                return None
            fields[key] = boolean
        if unsigned:
            unsigned = _without(unsigned, key)
    return unsigned


def _without(keys: tuple[str, ...], key: str) -> tuple[str, ...]:
    return tuple(k for k in keys if k != key) if key in keys else keys
