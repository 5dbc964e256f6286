"""Read InfluxDB line protocol files, such as `influx_inspect export` and `influxd inspect export-lp` write.

Line protocol has one point per line::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

- The measurement, tag set, field set and timestamp are separated by unescaped spaces; tags and
  fields by unescaped commas. Tags are optional, at least one field is required.
- A backslash escapes the next character. In measurements and field keys `\\,`, `\\ `, `\\=` and
  `\\"` stand for the character itself, in tag keys and values `\\,`, `\\ ` and `\\=`; any other
  backslash is kept literally (InfluxDB stores `a\\\\b` as written).
- Field values: a float (`1`, `-1.5`, `.5`, `1e3`, `-1.5E-3`; NaN and infinities are rejected), an
  integer with an `i` suffix (`12i`, 64-bit signed), an unsigned integer with a `u` suffix (`12u`,
  64-bit), a boolean (`t T true True TRUE f F false False FALSE`) or a string in double quotes.
  Inside a string `\\"` is a quote and `\\\\` a backslash; commas, spaces, `=` and even raw newlines
  are part of the string (exporters write newlines unescaped, so a string may span physical lines).
- The timestamp is an integer in the precision the writer used (nanoseconds for exports). A line
  without one gets the reader's default time; InfluxDB would use the time of the write.
- Blank lines and lines starting with `#` are skipped. An export's header (`# DDL`,
  `CREATE DATABASE ...`, `# DML`, `# CONTEXT-DATABASE:db`, `# CONTEXT-RETENTION-POLICY:rp`) is
  skipped too, and the context database and retention policy are recorded in `ScanStats`.

Accepted and rejected lines match what InfluxDB 1.x's parser does, with three deliberate
differences: text after a closing quote (`s="a"b`) is an error rather than folded into the
string, `\\\\` right before a separator in a name is an error rather than read inconsistently,
and a line may end in `\\r\\n`.

`parse_line` parses one line, `iter_file_points` streams the points of a plain or gzip-compressed
file, and `LineProtocolSource` offers a set of files through the same methods as the HTTP reader
(measurements, field and tag keys, windowed series batches), so the ingest can use either.
"""

from __future__ import annotations

import glob
import gzip
import heapq
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Literal

from data_platform.lib.influx.reader.model import (
    FieldInfo,
    FieldStats,
    FieldValue,
    SeriesBatch,
    Tags,
)
from data_platform.lib.timing.window import Window

OnError = Literal["fail", "skip"]

MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2
"""The range of timestamps InfluxDB accepts (a few values at the int64 ends are reserved)."""

MAX_RECORD_CHARS = 1 << 20
"""A string value that spans physical lines may not make a record longer than this."""

_PRECISION_NS: dict[str, int] = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

_BOOLEANS: dict[str, bool] = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_UINT_MAX = 2**64 - 1
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]+")

_STRING_ESCAPE = re.compile(r"\\([\\\"])")

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

_SERIES_CACHE_LIMIT = 200_000
_series_cache: dict[str, tuple[str, Tags]] = {}
_escaped_series_cache: dict[str, tuple[str, Tags]] = {}


class LineProtocolError(ValueError):
    """A line that is not valid line protocol; names the file, line, column and the problem."""

    def __init__(
        self,
        reason: str,
        *,
        line: str,
        column: int | None = None,
        path: str | None = None,
        line_no: int | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.path = path
        self.line_no = line_no
        where = ", ".join(
            part
            for part in (
                path,
                f"line {line_no}" if line_no is not None else None,
                f"column {column}" if column is not None else None,
            )
            if part
        )
        snippet = line if len(line) <= 200 else line[:200] + "..."
        super().__init__(f"{where or 'line protocol'}: {reason}: {snippet!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        restore = partial(
            type(self),
            self.reason,
            line=self.line,
            column=self.column,
            path=self.path,
            line_no=self.line_no,
        )
        return (restore, ())


class _Malformed(Exception):
    """A syntax problem at a 0-based offset of the text being parsed."""

    def __init__(self, offset: int, reason: str, *, unterminated: bool = False) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.unterminated = unterminated


@dataclass(slots=True)
class Point:
    """One parsed line: a point of one series.

    `unsigned` names the fields written with the `u` suffix (they are Python ints like the
    `i` integers, and only this tells them apart).
    """

    measurement: str
    tags: Tags
    fields: dict[str, FieldValue]
    time_ns: int | None
    unsigned: tuple[str, ...] = ()


@dataclass(slots=True)
class ScanStats:
    """What reading one file met besides points."""

    lines: int = 0
    points: int = 0
    skipped_lines: int = 0
    errors: list[LineProtocolError] = field(default_factory=list)
    """The first `MAX_KEPT_ERRORS` malformed lines skipped under `on_error="skip"`."""
    databases: list[str] = field(default_factory=list)
    """Values of the export's `# CONTEXT-DATABASE:` lines, in file order."""
    retention_policies: list[str] = field(default_factory=list)

    MAX_KEPT_ERRORS = 20


def parse_precision(precision: str) -> int:
    """Nanoseconds per unit of a line protocol timestamp precision (`ns`, `us`, `ms`, `s`)."""
    try:
        return _PRECISION_NS[precision]
    except KeyError:
        raise ValueError(
            f"unknown timestamp precision {precision!r}: use one of ns, us, ms, s "
            "(InfluxDB 1.x's n, u, m and h are accepted too)"
        ) from None


def parse_line(line: str, *, precision: str = "ns") -> Point | None:
    """Parse one line of line protocol; `None` for a blank or comment line.

    A line without a timestamp gives a point with `time_ns=None`. Raises `LineProtocolError`
    (without path and line number) for a malformed line.
    """
    scale = _PRECISION_NS.get(precision) or parse_precision(precision)
    if line[-1:] in ("\n", "\r"):
        line = line.rstrip("\r\n")
    if not line or line[0] in " #":
        stripped = line.strip(" ")
        if not stripped or stripped[0] == "#":
            return None
    try:
        return _parse(line, scale)
    except _Malformed as exc:
        raise _error(exc, line) from None


def iter_file_points(
    path: str | os.PathLike[str],
    *,
    precision: str = "ns",
    default_time_ns: int | None = None,
    on_error: OnError = "fail",
    stats: ScanStats | None = None,
) -> Iterator[Point]:
    """Stream the points of a line protocol file, plain or gzip-compressed (by its magic bytes).

    Points without a timestamp get `default_time_ns`, or when that is None the file's
    modification time, which stays the same on every read of an unchanged file. With
    `on_error="skip"` malformed lines are counted in `stats` instead of raising
    `LineProtocolError`. Memory does not grow with the file: lines are read one at a time.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    return _read_points(
        Path(path),
        scale=parse_precision(precision),
        default_time_ns=default_time_ns,
        on_error=on_error,
        stats=stats,
    )


# -- parsing ---------------------------------------------------------------------------------------


def _parse(text: str, scale: int) -> Point:
    point = _parse_fast(text, scale)
    if point is None:
        point = _parse_careful(text, scale)
    return point


def _parse_fast(line: str, scale: int) -> Point | None:
    """Parse a well-formed line with str.split and friends; None sends it to the careful scanner.

    Whatever this accepts, `_parse_careful` accepts with the same result; anything unusual
    (extra spaces, malformed values, quotes in keys) is left to the scanner, which also
    explains what is wrong.
    """
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
    cache = _escaped_series_cache if escaped else _series_cache
    series = cache.get(key)
    if series is None:
        series = _split_series_key(key, escaped)
        if series is None:
            return None
        if len(cache) >= _SERIES_CACHE_LIMIT:
            cache.clear()
        cache[key] = series

    # An ASCII field set holds no placeholder and no non-ASCII digit float() would take.
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
        time_ns = int(stamp) * scale
        if MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            return Point(series[0], series[1], fields, time_ns, unsigned)
    return None


def _split_series_key(key: str, escaped: bool) -> tuple[str, Tags] | None:
    parts = key.split(",")
    measurement = parts[0]
    if not measurement:
        return None
    if escaped:
        measurement = _unescape_name(measurement.translate(_RESTORE))
    if len(parts) == 1:
        return measurement, ()
    tags: dict[str, str] = {}
    for part in parts[1:]:
        tag_key, _, tag_value = part.partition("=")
        if not tag_key or not tag_value or "=" in tag_value[1:]:
            return None
        if escaped:
            tag_key = _unescape_tag(tag_key.translate(_RESTORE))
            tag_value = _unescape_tag(tag_value.translate(_RESTORE))
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
                key = _unescape_name(key.translate(_RESTORE))
            if not text.isascii():
                text = _unescape_string(text.translate(_RESTORE))
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
            key = _unescape_name(key.translate(_RESTORE))
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
                text = _unescape_string(text.translate(_RESTORE))
            fields[key] = text
        elif last == "i":
            digits = text[:-1]
            if not (digits.isdigit() or (digits[:1] == "-" and digits[1:].isdigit())) or not (
                ascii or digits.isascii()
            ):
                return None
            integer = int(digits)
            if len(digits) > 18 and not _INT_MIN <= integer <= _INT_MAX:
                return None
            fields[key] = integer
        elif last == "u":
            digits = text[:-1]
            if not digits.isdigit() or not digits.isascii():
                return None
            integer = int(digits)
            if integer > _UINT_MAX:
                return None
            fields[key] = integer
            unsigned = (*_without(unsigned, key), key)
            continue
        else:
            boolean = _BOOLEANS.get(text)
            if boolean is None:
                return None
            fields[key] = boolean
        if unsigned:
            unsigned = _without(unsigned, key)
    return unsigned


def _without(keys: tuple[str, ...], key: str) -> tuple[str, ...]:
    return tuple(k for k in keys if k != key) if key in keys else keys


def _unescape_name(text: str) -> str:
    """Measurement or field key: InfluxDB unescapes `\\,` `\\ ` `\\=` and `\\"`."""
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=").replace('\\"', '"')


def _unescape_tag(text: str) -> str:
    """Tag key or value: InfluxDB unescapes `\\,` `\\ ` and `\\=`."""
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")


def _unescape_string(text: str) -> str:
    """String field value: `\\"` is a quote, `\\\\` a backslash; other backslashes stay."""
    if "\\" not in text:
        return text
    return _STRING_ESCAPE.sub(r"\1", text)


def _scan(line: str, i: int, stops: str) -> int:
    """Offset of the first unescaped character of `stops` at or after `i`, or len(line)."""
    n = len(line)
    while i < n:
        char = line[i]
        if char == "\\":
            i += 2
        elif char in stops:
            return i
        else:
            i += 1
    return n


def _check_key_end(line: str, start: int, end: int) -> None:
    if start < end < len(line) and line[end - 1] == "\\":
        raise _Malformed(
            end - 1,
            f"ambiguous escape: '\\\\' right before {line[end]!r} (InfluxDB reads the "
            f"{line[end]!r} as escaped); drop a backslash or escape the {line[end]!r} too",
        )


def _parse_careful(line: str, scale: int) -> Point:
    """Character by character, as InfluxDB scans a line; raises `_Malformed` with the reason."""
    n = len(line)
    i = 0
    while i < n and line[i] == " ":
        i += 1
    start = i
    i = min(_scan(line, i, ", "), n)
    if i == start:
        raise _Malformed(start, "missing measurement")
    _check_key_end(line, start, i)
    measurement = _unescape_name(line[start:i])

    tags: dict[str, str] = {}
    while i < n and line[i] == ",":
        key_start = i + 1
        i = min(_scan(line, key_start, ",= "), n)
        tag_key = line[key_start:i]
        if i == key_start:
            raise _Malformed(key_start, "missing tag key")
        _check_key_end(line, key_start, i)
        if i == n or line[i] != "=":
            raise _Malformed(i, f"tag {tag_key!r} has no value (expected key=value)")
        value_start = i + 1
        # like InfluxDB, a value may start with '=' (`t==a` is the value "=a")
        i = value_start + 1 if line[value_start : value_start + 1] == "=" else value_start
        i = min(_scan(line, i, ",= "), n)
        if i < n and line[i] == "=":
            raise _Malformed(i, f"unescaped '=' in the value of tag {tag_key!r}")
        if i == value_start:
            raise _Malformed(value_start, f"missing value for tag {tag_key!r}")
        _check_key_end(line, value_start, i)
        tag_key = _unescape_tag(tag_key)
        if tag_key in tags:
            raise _Malformed(key_start, f"duplicate tag key {tag_key!r}")
        tags[tag_key] = _unescape_tag(line[value_start:i])

    while i < n and line[i] == " ":
        i += 1
    if i == n:
        raise _Malformed(i, "missing fields (expected at least one key=value after the series)")

    fields: dict[str, FieldValue] = {}
    unsigned: dict[str, None] = {}
    while True:
        key_start = i
        i = min(_scan(line, i, ",= "), n)
        raw_key = line[key_start:i]
        if i == key_start:
            raise _Malformed(key_start, "missing field key")
        _check_key_end(line, key_start, i)
        if i == n or line[i] != "=":
            raise _Malformed(i, f"field {raw_key!r} has no value (expected key=value)")
        key = _unescape_name(raw_key)
        i += 1
        if i == n or line[i] in ", ":
            raise _Malformed(i, f"missing value for field {key!r}")
        if line[i] == '"':
            value_start = i
            i += 1
            while i < n:
                char = line[i]
                if char == "\\":
                    i += 2
                elif char == '"':
                    break
                else:
                    i += 1
            if i >= n:
                raise _Malformed(
                    value_start, f"unterminated string value of field {key!r}", unterminated=True
                )
            fields[key] = _unescape_string(line[value_start + 1 : i])
            unsigned.pop(key, None)
            i += 1
            if i < n and line[i] not in ", ":
                raise _Malformed(
                    i, f"unexpected {line[i]!r} after the string value of field {key!r}"
                )
        else:
            value_start = i
            while i < n and line[i] not in ", ":
                i += 1
            token = line[value_start:i]
            fields[key] = _convert(token, key, value_start)
            if token[-1] == "u":
                unsigned[key] = None
            else:
                unsigned.pop(key, None)
        if i == n or line[i] == " ":
            break
        i += 1  # the comma before the next field

    while i < n and line[i] == " ":
        i += 1
    time_ns: int | None = None
    if i < n:
        stamp_start = i
        while i < n and line[i] != " ":
            i += 1
        stamp = line[stamp_start:i]
        if not _INTEGER.fullmatch(stamp):
            raise _Malformed(stamp_start, f"invalid timestamp {stamp!r} (expected an integer)")
        time_ns = int(stamp) * scale
        if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            raise _Malformed(stamp_start, f"timestamp {stamp} is out of InfluxDB's time range")
        while i < n and line[i] == " ":
            i += 1
        if i < n:
            raise _Malformed(i, f"unexpected {line[i : i + 20]!r} after the timestamp")

    return Point(measurement, tuple(sorted(tags.items())), fields, time_ns, tuple(unsigned))


def _convert(token: str, key: str, offset: int) -> FieldValue:
    last = token[-1]
    if last == "i" and len(token) > 1 and token[-2] != "-":
        digits = token[:-1]
        if not _INTEGER.fullmatch(digits):
            raise _Malformed(offset, f"invalid integer {token!r} for field {key!r}")
        integer = int(digits)
        if not _INT_MIN <= integer <= _INT_MAX:
            raise _Malformed(offset, f"integer {token!r} of field {key!r} is out of int64 range")
        return integer
    if last == "u" and len(token) > 1:
        digits = token[:-1]
        if not digits.isascii() or not digits.isdigit():
            raise _Malformed(offset, f"invalid unsigned integer {token!r} for field {key!r}")
        integer = int(digits)
        if integer > _UINT_MAX:
            raise _Malformed(offset, f"unsigned {token!r} of field {key!r} is out of uint64 range")
        return integer
    boolean = _BOOLEANS.get(token)
    if boolean is not None:
        return boolean
    if _FLOAT.fullmatch(token):
        number = float(token)
        if number - number:
            raise _Malformed(offset, f"float {token!r} of field {key!r} is out of float64 range")
        return number
    lowered = token.lstrip("+-").lower()
    if lowered == "nan":
        raise _Malformed(offset, f"NaN is not a valid value (field {key!r})")
    if lowered in ("inf", "infinity"):
        raise _Malformed(
            offset, f"{token!r} is not a valid value: infinities are not (field {key!r})"
        )
    if token[0] in "-.0123456789":
        raise _Malformed(offset, f"invalid number {token!r} for field {key!r}")
    raise _Malformed(
        offset,
        f"invalid value {token!r} for field {key!r}: not a number, a boolean "
        "(t, T, true, True, TRUE, f, F, false, False, FALSE) or a double-quoted string",
    )


def _error(
    exc: _Malformed, text: str, path: str | None = None, line_no: int | None = None
) -> LineProtocolError:
    offset = exc.offset
    if line_no is not None and "\n" in text[:offset]:
        # a record spanning physical lines: name the physical line of the problem
        line_no += text.count("\n", 0, offset)
        offset -= text.rfind("\n", 0, offset) + 1
    return LineProtocolError(exc.reason, line=text, column=offset + 1, path=path, line_no=line_no)


# -- files -----------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_DDL_STATEMENTS = ("CREATE DATABASE ", "CREATE RETENTION POLICY ")


def _open_binary(path: Path) -> BinaryIO:
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    except BaseException:
        raw.close()
        raise
    return raw


def _read_points(
    path: Path,
    *,
    scale: int,
    default_time_ns: int | None,
    on_error: OnError,
    stats: ScanStats | None,
    measurement: str | None = None,
) -> Iterator[Point]:
    """The points of one file; with `measurement`, lines of other measurements may be skipped
    without being parsed."""
    if default_time_ns is None:
        default_time_ns = path.stat().st_mtime_ns
    if stats is None:
        stats = ScanStats()
    # Lines of a measurement start with its escaped name and a separator; only names with
    # `\\`, `=` or `"` can be spelled more than one way.
    prefix: tuple[str, ...] | None = None
    if measurement is not None and not any(char in measurement for char in '\\="'):
        escaped = measurement.replace(",", "\\,").replace(" ", "\\ ")
        prefix = (escaped + ",", escaped + " ")
    name = str(path)
    in_ddl = False
    points = 0
    line_no = 0
    handle = _open_binary(path)
    try:
        numbered: Iterator[tuple[int, bytes]] | None = enumerate(handle, 1)
        while numbered is not None:
            resume: Iterator[tuple[int, bytes]] | None = None
            for line_no, raw in numbered:
                try:
                    line = raw.decode()
                except UnicodeDecodeError as exc:
                    error = LineProtocolError(
                        f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1})",
                        line=raw.decode(errors="replace").rstrip("\r\n"),
                        column=exc.start + 1,
                        path=name,
                        line_no=line_no,
                    )
                    if on_error == "fail":
                        raise error from None
                    _count_skipped(stats, error)
                    continue
                text = line.rstrip("\r\n")
                if not text or text[0] == "#" or text[0] == " ":
                    text = text.lstrip(" ")
                    if not text.rstrip(" "):
                        continue
                    if text[0] == "#":
                        in_ddl = _read_comment(text, stats, in_ddl)
                        continue
                if prefix is not None and not text.startswith(prefix) and '"' not in text:
                    continue
                try:
                    point = _parse(text, scale)
                except _Malformed as exc:
                    if in_ddl or text.startswith(_DDL_STATEMENTS):
                        continue
                    if not exc.unterminated:
                        error = _error(exc, text, name, line_no)
                        if on_error == "fail":
                            raise error from None
                        _count_skipped(stats, error)
                        continue
                    # a string value with raw newlines: join the following physical lines
                    joined = _join_record(line, numbered, scale)
                    if isinstance(joined, Point):
                        point = joined
                    else:
                        consumed, failure, record = joined
                        error = _error(failure, record, name, line_no)
                        if on_error == "fail":
                            raise error from None
                        _count_skipped(stats, error)
                        if failure.unterminated:
                            # never closed: resume right after the line that opened it
                            resume = chain(consumed, numbered)
                            break
                        continue
                if point.time_ns is None:
                    point.time_ns = default_time_ns
                points += 1
                yield point
            numbered = resume
    finally:
        handle.close()
        stats.lines += line_no
        stats.points += points


def _join_record(
    first: str, numbered: Iterator[tuple[int, bytes]], scale: int
) -> Point | tuple[list[tuple[int, bytes]], _Malformed, str]:
    """Append physical lines to an open string value until the record parses.

    Returns the point, or (the lines consumed, the failure, the record text) when the record
    stays malformed: unterminated up to the end of the file or `MAX_RECORD_CHARS`, or broken
    elsewhere once closed.
    """
    consumed: list[tuple[int, bytes]] = []
    record = first
    failure = _Malformed(0, "unterminated string value", unterminated=True)
    while len(record) <= MAX_RECORD_CHARS:
        following = next(numbered, None)
        if following is None:
            break
        consumed.append(following)
        record += following[1].decode(errors="replace")
        text = record.rstrip("\r\n")
        try:
            return _parse(text, scale)
        except _Malformed as exc:
            failure = exc
            if not exc.unterminated:
                return consumed, exc, text
    text = first.rstrip("\r\n")
    try:
        _parse_careful(text, scale)
    except _Malformed as exc:
        failure = exc
    return consumed, failure, text


def _read_comment(comment: str, stats: ScanStats, in_ddl: bool) -> bool:
    """Record an export header's context; returns whether the DDL section is open."""
    body = comment[1:].strip()
    if body == "DDL":
        return True
    if body == "DML":
        return False
    label, sep, value = body.partition(":")
    if sep:
        if label.strip() == "CONTEXT-DATABASE":
            stats.databases.append(value.strip())
        elif label.strip() == "CONTEXT-RETENTION-POLICY":
            stats.retention_policies.append(value.strip())
    return in_ddl


def _count_skipped(stats: ScanStats, error: LineProtocolError) -> None:
    stats.skipped_lines += 1
    if len(stats.errors) < ScanStats.MAX_KEPT_ERRORS:
        stats.errors.append(error)


# -- a set of files as a source --------------------------------------------------------------------


@dataclass(slots=True)
class MeasurementIndex:
    """What one file holds of one measurement."""

    first_ns: int
    last_ns: int
    points: int = 0
    field_types: dict[str, set[str]] = field(default_factory=dict)
    tag_keys: set[str] = field(default_factory=set)
    series: set[Tags] = field(default_factory=set)


@dataclass(slots=True)
class FileIndex:
    """The schema and time range of one file, valid while its size and mtime are unchanged."""

    path: Path
    size: int
    mtime_ns: int
    measurements: dict[str, MeasurementIndex]
    stats: ScanStats


_INDEX_CACHE_LIMIT = 4096
_index_cache: OrderedDict[tuple[str, int, int, int, int | None, str], FileIndex] = OrderedDict()
_index_lock = threading.Lock()
_INFLUX_TYPES: dict[type | str, str] = {
    float: "float",
    int: "integer",
    bool: "boolean",
    str: "string",
    "unsigned": "unsigned",
}


def _index_file(
    path: Path, *, scale: int, default_time_ns: int | None, on_error: OnError
) -> FileIndex:
    """Scan a file once for its measurements, fields, tag keys and time ranges (cached)."""
    status = path.stat()
    cache_key = (
        str(path.resolve()),
        status.st_size,
        status.st_mtime_ns,
        scale,
        default_time_ns,
        on_error,
    )
    with _index_lock:
        cached = _index_cache.get(cache_key)
        if cached is not None:
            _index_cache.move_to_end(cache_key)
            return cached

    stats = ScanStats()
    measurements: dict[str, MeasurementIndex] = {}
    typed_fields: set[tuple[str, str, type | str]] = set()
    for point in _read_points(
        path, scale=scale, default_time_ns=default_time_ns, on_error=on_error, stats=stats
    ):
        name = point.measurement
        time_ns = point.time_ns
        assert time_ns is not None
        entry = measurements.get(name)
        if entry is None:
            entry = measurements[name] = MeasurementIndex(time_ns, time_ns)
        elif time_ns < entry.first_ns:
            entry.first_ns = time_ns
        elif time_ns > entry.last_ns:
            entry.last_ns = time_ns
        entry.points += 1
        if point.tags not in entry.series:
            entry.series.add(point.tags)
            entry.tag_keys.update(key for key, _ in point.tags)
        if point.unsigned:
            for key, value in point.fields.items():
                kind = "unsigned" if key in point.unsigned else value.__class__
                typed_fields.add((name, key, kind))
        else:
            for key, value in point.fields.items():
                typed_fields.add((name, key, value.__class__))
    for name, key, kind in typed_fields:
        measurements[name].field_types.setdefault(key, set()).add(_INFLUX_TYPES[kind])

    index = FileIndex(path, status.st_size, status.st_mtime_ns, measurements, stats)
    with _index_lock:
        _index_cache[cache_key] = index
        while len(_index_cache) > _INDEX_CACHE_LIMIT:
            _index_cache.popitem(last=False)
    return index


class _SeriesBuffer:
    """The earliest `capacity` distinct timestamps of one series above a floor, fields merged."""

    __slots__ = ("capacity", "floor", "heap", "overflowed", "rows")

    def __init__(self, capacity: int, floor: int | None) -> None:
        self.capacity = capacity
        self.floor = floor  # timestamps at or below it went out in an earlier pass
        self.rows: dict[int, dict[str, FieldValue]] = {}
        self.heap: list[int] = []  # negated timestamps: the latest kept one on top
        self.overflowed = False

    def add(self, time_ns: int, fields: dict[str, FieldValue]) -> None:
        """Take a point's fields (the dict becomes the buffer's, and may be updated in place)."""
        rows = self.rows
        row = rows.get(time_ns)
        if row is not None:
            row.update(fields)  # the same point again: later values win per field
            return
        if len(rows) < self.capacity:
            rows[time_ns] = fields
            heapq.heappush(self.heap, -time_ns)
            return
        self.overflowed = True
        latest = -self.heap[0]
        if time_ns < latest:
            heapq.heapreplace(self.heap, -time_ns)
            del rows[latest]
            rows[time_ns] = fields


class LineProtocolSource:
    """Line protocol files (plain or gzip) read like an InfluxDB server: by measurement and window.

    `paths` is a path, a glob pattern (`**` recurses) or a list of them; they are expanded on
    every call, so files added later are picked up. Files are read in that order (glob matches
    sorted), which decides which of two writes of the same point wins: the later one, per field.
    Each file is scanned once for its schema and time range per measurement; the index is
    cached by (path, size, mtime), so windows outside a file's range never open it again.
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        precision: str = "ns",
        on_error: OnError = "fail",
        default_time_ns: int | None = None,
    ) -> None:
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
        entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.patterns: tuple[str, ...] = tuple(os.fspath(p) for p in entries)
        if not self.patterns:
            raise ValueError("LineProtocolSource needs at least one path or glob pattern")
        self.precision = precision
        self.scale = parse_precision(precision)
        self.on_error: OnError = on_error
        self.default_time_ns = default_time_ns

    def __repr__(self) -> str:
        return f"LineProtocolSource({list(self.patterns)!r}, precision={self.precision!r})"

    # -- files and their index ---------------------------------------------------------------------

    def paths(self) -> list[Path]:
        """The files the patterns match now, in reading order; a pattern matching none is an error."""
        found: dict[Path, None] = {}
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
                if not matches:
                    raise FileNotFoundError(f"no line protocol files match {pattern!r}")
                found.update((Path(p), None) for p in matches)
            elif os.path.isfile(pattern):
                found[Path(pattern)] = None
            else:
                raise FileNotFoundError(f"line protocol file {pattern!r} does not exist")
        return list(found)

    def files(self) -> list[FileIndex]:
        """The index of every file: measurements, time ranges and what the scan skipped."""
        return [
            _index_file(
                path,
                scale=self.scale,
                default_time_ns=self.default_time_ns,
                on_error=self.on_error,
            )
            for path in self.paths()
        ]

    def _measurement_indexes(self, measurement: str) -> list[tuple[FileIndex, MeasurementIndex]]:
        return [
            (index, index.measurements[measurement])
            for index in self.files()
            if measurement in index.measurements
        ]

    # -- schema ------------------------------------------------------------------------------------

    def list_measurements(self) -> list[str]:
        return sorted({name for index in self.files() for name in index.measurements})

    def list_field_keys(self, measurement: str) -> list[FieldInfo]:
        """One FieldInfo per field and type (a field written with two types in the files has two)."""
        seen: set[tuple[str, str]] = set()
        for _, entry in self._measurement_indexes(measurement):
            for key, types in entry.field_types.items():
                seen.update((key, influx_type) for influx_type in types)
        return [FieldInfo(measurement, key, influx_type) for key, influx_type in sorted(seen)]

    def list_tag_keys(self, measurement: str) -> list[str]:
        return sorted(
            {key for _, entry in self._measurement_indexes(measurement) for key in entry.tag_keys}
        )

    def list_series(self, measurement: str) -> list[Tags]:
        """Every tag set of the measurement in the files, like InfluxDB's SHOW SERIES."""
        return sorted(
            {tags for _, entry in self._measurement_indexes(measurement) for tags in entry.series}
        )

    # -- data --------------------------------------------------------------------------------------

    def stream_window(
        self,
        measurement: str,
        window: Window,
        *,
        fields: Sequence[str] | None = None,
        tag_filters: Mapping[str, Sequence[str]] | None = None,
        chunk_size: int = 10_000,
    ) -> Iterator[SeriesBatch]:
        """Points of `measurement` with window.start_ns <= time < window.end_ns, per series.

        Each batch holds at most `chunk_size` rows of one series, sorted by time; a series'
        batches come in time order (other series' batches may come in between). Two writes of
        the same point (series and time) are merged, the later line winning per field.
        Columns are `fields`, or every field of the measurement in the files, sorted; rows
        without a value for any of them are left out. `tag_filters` keeps series whose tag has
        one of the listed values ("" matches a series without that tag).

        Memory is bounded by `chunk_size` rows per series in the window: a series with more
        points there is read in several passes over the files, each taking the next
        `chunk_size` timestamps.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        start_ns, end_ns = window.start_ns, window.end_ns
        indexes = [
            index
            for index, entry in self._measurement_indexes(measurement)
            if entry.first_ns < end_ns and entry.last_ns >= start_ns
        ]
        if not indexes:
            return
        if fields is None:
            columns = tuple(sorted({f.field for f in self.list_field_keys(measurement)}))
        else:
            columns = tuple(dict.fromkeys(fields))
        keep_series = _tag_filter(tag_filters)

        floors: dict[Tags, int] | None = None  # None: the first pass, open to every series
        while True:
            buffers = self._collect_pass(
                indexes, measurement, start_ns, end_ns, chunk_size, keep_series, floors
            )
            floors = {}
            for tags in sorted(buffers):
                buffer = buffers[tags]
                rows = [
                    [time_ns, *(values.get(column) for column in columns)]
                    for time_ns, values in sorted(buffer.rows.items())
                ]
                if buffer.overflowed:
                    floors[tags] = max(buffer.rows)
                rows = [row for row in rows if any(value is not None for value in row[1:])]
                if rows:
                    yield SeriesBatch(measurement, tags, columns, rows)
            if not floors:
                return

    def _collect_pass(
        self,
        indexes: list[FileIndex],
        measurement: str,
        start_ns: int,
        end_ns: int,
        chunk_size: int,
        keep_series: Callable[[Tags], bool] | None,
        floors: dict[Tags, int] | None,
    ) -> dict[Tags, _SeriesBuffer]:
        """One read of the files: per series, the next `chunk_size` timestamps of the window."""
        buffers: dict[Tags, _SeriesBuffer] = {}
        if floors is not None:
            for tags, floor in floors.items():
                buffers[tags] = _SeriesBuffer(chunk_size, floor)
        kept: dict[Tags, bool] = {}
        for index in indexes:
            points = _read_points(
                index.path,
                scale=self.scale,
                default_time_ns=self.default_time_ns,
                on_error=self.on_error,
                stats=None,
                measurement=measurement,
            )
            for point in points:
                time_ns = point.time_ns
                assert time_ns is not None
                if time_ns < start_ns or time_ns >= end_ns or point.measurement != measurement:
                    continue
                tags = point.tags
                buffer = buffers.get(tags)
                if buffer is None:
                    if floors is not None:
                        continue  # this series was complete after an earlier pass
                    if keep_series is not None:
                        keep = kept.get(tags)
                        if keep is None:
                            keep = kept[tags] = keep_series(tags)
                        if not keep:
                            continue
                    buffer = buffers[tags] = _SeriesBuffer(chunk_size, None)
                elif buffer.floor is not None and time_ns <= buffer.floor:
                    continue
                buffer.add(time_ns, point.fields)
        return buffers

    def window_stats(self, measurement: str, window: Window) -> dict[str, FieldStats]:
        """Per field with values in the window: how many (after merging duplicate points), and
        the first and last time."""
        counts: dict[str, int] = {}
        firsts: dict[str, int] = {}
        lasts: dict[str, int] = {}
        for batch in self.stream_window(measurement, window):
            for position, column in enumerate(batch.columns, start=1):
                times = [row[0] for row in batch.rows if row[position] is not None]
                if not times:
                    continue
                first, last = times[0], times[-1]  # batches are sorted by time
                assert isinstance(first, int) and isinstance(last, int)
                counts[column] = counts.get(column, 0) + len(times)
                firsts[column] = min(firsts.get(column, first), first)
                lasts[column] = max(lasts.get(column, last), last)
        return {
            column: FieldStats(count=counts[column], first_ns=firsts[column], last_ns=lasts[column])
            for column in sorted(counts)
        }


def _tag_filter(tag_filters: Mapping[str, Sequence[str]] | None) -> Callable[[Tags], bool] | None:
    if not tag_filters:
        return None
    for key, values in tag_filters.items():
        if isinstance(values, str):
            raise ValueError(
                f"tag filter {key!r}: give a list of values, not the string {values!r}"
            )
        if not values:
            raise ValueError(f"tag filter {key!r} has no values; leave the key out to read all")
    wanted = {key: frozenset(values) for key, values in tag_filters.items()}

    def keep(tags: Tags) -> bool:
        present = dict(tags)
        return all(present.get(key, "") in values for key, values in wanted.items())

    return keep
