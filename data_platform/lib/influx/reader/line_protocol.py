"""Read InfluxDB line protocol files, such as `influx_inspect export` and `influxd inspect export-lp` write.

Line protocol has one point per line::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

- The measurement, tag set, field set and timestamp are separated by unescaped spaces; tags and
  fields by unescaped commas. Tags are optional, at least one field is required.
- Escapes follow InfluxDB 1.x `models/points.go` (influxdata/influxdb, funcs `scanMeasurement`,
  `scanTagsKey`, `scanTagsValue`, `unescapeTag`): in the measurement and the tags a separator is
  escaped whenever the character before it is a backslash, even an escaped one, and `\\,` `\\ `
  `\\=` (and `\\"` in measurements and field keys) stand for the character itself; so
  `cpu,regions=east\\\\ west` is the tag value `east\\ west`. Any other backslash stays.
  In field keys (`scanFields`, pair-wise escapes) `\\\\` right before a separator is refused,
  as 1.x refuses it (invalid field format).
- Field values: a float (`1`, `-1.5`, `.5`, `1e3`, `-1.5E-3`; NaN and infinities are rejected), an
  integer with an `i` suffix (`12i`, 64-bit signed), an unsigned integer with a `u` suffix (`12u`,
  64-bit), a boolean (`t T true True TRUE f F false False FALSE`) or a string in double quotes.
  Inside a string `\\"` is a quote and `\\\\` a backslash (`unescapeStringField`); commas,
  spaces, `=` and raw newlines are part of the string.
- Whitespace: spaces, tabs and NUL bytes are skipped at the start of a line, of the field set and
  of the timestamp (`skipWhitespace`); a line of only those is blank, and one whose first other
  character is `#` is a comment (`ParsePointsWithPrecision`). After the timestamp only spaces.
- Line ends: `\\n`, and `\\r\\n`. A `\\r` not followed by `\\n` is part of the line, so a
  bare `\\r` ending the data gives InfluxDB's invalid number / bad timestamp.
- The timestamp is an integer in the precision the writer used. A line without one gets the
  reader's default time truncated to that precision, as InfluxDB truncates "now"
  (`parsePoint` -> `SetPrecision`).
- Invalid UTF-8, per line: each byte that is not UTF-8 becomes U+FFFD, in every part of the line,
  which is what InfluxDB 1.x answers for it on query (Go's JSON encoder); the line is counted in
  `ScanStats.replaced_utf8_lines`.
- An export's header (`# DDL`, `CREATE DATABASE ...`, `# DML`, `# CONTEXT-DATABASE:db`,
  `# CONTEXT-RETENTION-POLICY:rp`) is skipped, its context recorded in `ScanStats`.

Checked against a real influxd 1.6.7 by `test_line_protocol_differential.py` (seeded generated
and mutated lines). Intended differences, each asserted there:

- `u` integers: 1.6.7 (built without uint support) refuses them as invalid number; the reader
  takes them as unsigned, as 2.x (`influxd inspect export-lp`) writes them.
- `\\r\\n` ends a line (1.x keeps the `\\r`: bad timestamp, or a string value ending in `"`).
- Text after a closing quote (`s="a"b`) is an error; 1.x stores the mangled `a"`.
- A record ends where the line ends unless a string value is open by the grammar. 1.x's
  `scanLine` cuts a write's body into records by counting quotes instead: from the first space
  on (a space at the start of the line, or one after `\\\\` in a tag, counts too), a `"` seen
  after more `=` than `,` opens or closes a "string", in a field key or a tag value as well,
  and a newline inside it does not end the record. `\\\\` counts as a pair there, so the `=`
  of a tag key `k\\\\=a` counts too. Such a line swallows the following lines until a quote
  closes, and 1.x refuses the whole block (usually "point is invalid"), although each line
  alone is stored as the reader reads it: ` m,k\\\\=a=b f=1,g"h=2 10` or
  `m,t\\\\ x=1 f=1,g"h=2 10`, each followed by any line. The reader reads such lines one
  by one. A string the grammar sees open takes the following lines until it closes (an
  export's newlines in a value); a record malformed after that is refused with all its lines,
  and a string never closed refuses its opening line only. Where 1.x cut the body elsewhere
  it may store a line the reader refused that way, and the other way round.
- A measurement or field key that is not UTF-8: 1.x may refuse the whole write (HTTP 500,
  "contains invalid UTF-8", at times storing the point all the same); the reader reads the
  line with U+FFFD.
- Not a parser difference: 1.x stores a measurement whose name has a backslash, but `SELECT`
  cannot name it; the test compares those lines as accepted only.
- Not a parser difference: one series spelled two ways in a database (`\\"` and `"` in a
  measurement, `a\\=b` and `a=b`, or `t=\\=a` and `t==a`) is one series to 1.x as to the
  reader, but 1.x's index keeps one spelling of the key (`SHOW SERIES` lists one) and a query
  returns only the points written under it; the reader yields them all.

The own parser is kept over PyPI `line-protocol-parser` (C): that package returns `u` and `i`
integers alike (the registry needs the unsigned type), takes a bare `\\r` as a line end and
works on decoded text only, so it would not conform where this module now does.

This module holds the grammar: `Point`, the escaping rules and the careful scanner, which reads
a line character by character as InfluxDB does and explains what is wrong. `parser.py` holds
the fast path most lines take (and `parse_line`); `files.py` reads files, `source.py` offers a
set of files through the same methods as the HTTP reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from data_platform.lib.influx.reader.errors import LineProtocolError
from data_platform.lib.influx.reader.model import FieldValue, Tags

MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2
"""The range of timestamps InfluxDB accepts (a few values at the int64 ends are reserved)."""

MAX_RECORD_CHARS = 1 << 20
"""A string value that spans physical lines may not make a record longer than this."""

PRECISION_NS: dict[str, int] = {
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

BOOLEANS: dict[str, bool] = {
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

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
UINT_MAX = 2**64 - 1
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]+")

WHITESPACE = " \t\x00"
"""What InfluxDB skips at the start of a line, of the field set and of the timestamp."""
SKIPPED_FIRST = WHITESPACE + "#"
"""First characters of a line that may make it blank or a comment."""

_STRING_ESCAPE = re.compile(r"\\([\\\"])")


class Malformed(Exception):
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


def parse_precision(precision: str) -> int:
    """Nanoseconds per unit of a line protocol timestamp precision (`ns`, `us`, `ms`, `s`)."""
    try:
        return PRECISION_NS[precision]
    except KeyError:
        raise ValueError(
            f"unknown timestamp precision {precision!r}: use one of ns, us, ms, s "
            "(InfluxDB 1.x's n, u, m and h are accepted too)"
        ) from None


def strip_line_end(line: str) -> str:
    """A line without its `\\n` or `\\r\\n`; a `\\r` not followed by `\\n` stays part of it."""
    if line[-1:] == "\n":
        line = line[:-2] if line[-2:-1] == "\r" else line[:-1]
    return line


def unescape_name(text: str) -> str:
    """Measurement or field key: InfluxDB unescapes `\\,` `\\ ` `\\=` and `\\"`."""
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=").replace('\\"', '"')


def unescape_tag(text: str) -> str:
    """Tag key or value: InfluxDB unescapes `\\,` `\\ ` and `\\=`."""
    if "\\" not in text:
        return text
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")


def unescape_string(text: str) -> str:
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


def _scan_key(line: str, i: int, stops: str) -> int:
    """Like `_scan` for measurements and tags, where InfluxDB takes a separator as escaped
    whenever the character before it is a backslash, even an escaped one."""
    n = len(line)
    while i < n:
        if line[i] in stops and line[i - 1] != "\\":
            return i
        i += 1
    return n


def _check_key_end(line: str, start: int, end: int) -> None:
    if start < end < len(line) and line[end - 1] == "\\":
        raise Malformed(
            end - 1,
            f"'\\\\' right before {line[end]!r} in a field key: InfluxDB refuses it "
            f"(invalid field format); drop a backslash or escape the {line[end]!r} too",
        )


def parse_careful(line: str, scale: int) -> Point:
    """Character by character, as InfluxDB scans a line; raises `Malformed` with the reason."""
    n = len(line)
    i = 0
    while i < n and line[i] in WHITESPACE:
        i += 1
    start = i
    if i == n or line[i] == ",":
        raise Malformed(start, "missing measurement")
    i = _scan_key(line, i + 1, ", ")
    measurement = unescape_name(line[start:i])

    tags: dict[str, str] = {}
    while i < n and line[i] == ",":
        key_start = i + 1
        if key_start == n or line[key_start] in ",= ":
            raise Malformed(key_start, "missing tag key")
        i = _scan_key(line, key_start + 1, ",= ")
        tag_key = line[key_start:i]
        if i == n or line[i] != "=":
            raise Malformed(i, f"tag {tag_key!r} has no value (expected key=value)")
        value_start = i + 1
        if value_start == n or line[value_start] in ", ":
            raise Malformed(value_start, f"missing value for tag {tag_key!r}")
        # like InfluxDB, a value may start with '=' (`t==a` is the value "=a")
        i = _scan_key(line, value_start + 1, ",= ")
        if i < n and line[i] == "=":
            raise Malformed(i, f"unescaped '=' in the value of tag {tag_key!r}")
        tag_key = unescape_tag(tag_key)
        if tag_key in tags:
            raise Malformed(key_start, f"duplicate tag key {tag_key!r}")
        tags[tag_key] = unescape_tag(line[value_start:i])

    while i < n and line[i] in WHITESPACE:
        i += 1
    if i == n:
        raise Malformed(i, "missing fields (expected at least one key=value after the series)")

    fields: dict[str, FieldValue] = {}
    unsigned: dict[str, None] = {}
    while True:
        key_start = i
        i = min(_scan(line, i, ",= "), n)
        raw_key = line[key_start:i]
        if i == key_start:
            raise Malformed(key_start, "missing field key")
        _check_key_end(line, key_start, i)
        if i == n or line[i] != "=":
            raise Malformed(i, f"field {raw_key!r} has no value (expected key=value)")
        key = unescape_name(raw_key)
        i += 1
        if i == n or line[i] in ", ":
            raise Malformed(i, f"missing value for field {key!r}")
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
                raise Malformed(
                    value_start, f"unterminated string value of field {key!r}", unterminated=True
                )
            fields[key] = unescape_string(line[value_start + 1 : i])
            unsigned.pop(key, None)
            i += 1
            if i < n and line[i] not in ", ":
                raise Malformed(
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

    while i < n and line[i] in WHITESPACE:
        i += 1
    time_ns: int | None = None
    if i < n:
        stamp_start = i
        while i < n and line[i] != " ":
            i += 1
        stamp = line[stamp_start:i]
        if not _INTEGER.fullmatch(stamp):
            raise Malformed(stamp_start, f"invalid timestamp {stamp!r} (expected an integer)")
        time_ns = int(stamp) * scale
        if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            raise Malformed(stamp_start, f"timestamp {stamp} is out of InfluxDB's time range")
        while i < n and line[i] == " ":
            i += 1
        if i < n:
            raise Malformed(i, f"unexpected {line[i : i + 20]!r} after the timestamp")

    return Point(measurement, tuple(sorted(tags.items())), fields, time_ns, tuple(unsigned))


def _convert(token: str, key: str, offset: int) -> FieldValue:
    last = token[-1]
    if last == "i" and len(token) > 1 and token[-2] != "-":
        digits = token[:-1]
        if not _INTEGER.fullmatch(digits):
            raise Malformed(offset, f"invalid integer {token!r} for field {key!r}")
        integer = int(digits)
        if not INT_MIN <= integer <= INT_MAX:
            raise Malformed(offset, f"integer {token!r} of field {key!r} is out of int64 range")
        return integer
    if last == "u" and len(token) > 1:
        digits = token[:-1]
        if not digits.isascii() or not digits.isdigit():
            raise Malformed(offset, f"invalid unsigned integer {token!r} for field {key!r}")
        integer = int(digits)
        if integer > UINT_MAX:
            raise Malformed(offset, f"unsigned {token!r} of field {key!r} is out of uint64 range")
        return integer
    boolean = BOOLEANS.get(token)
    if boolean is not None:
        return boolean
    if _FLOAT.fullmatch(token):
        number = float(token)
        if number - number:
            raise Malformed(offset, f"float {token!r} of field {key!r} is out of float64 range")
        return number
    lowered = token.lstrip("+-").lower()
    if lowered == "nan":
        raise Malformed(offset, f"NaN is not a valid value (field {key!r})")
    if lowered in ("inf", "infinity"):
        raise Malformed(
            offset, f"{token!r} is not a valid value: infinities are not (field {key!r})"
        )
    if token[0] in "-.0123456789":
        raise Malformed(offset, f"invalid number {token!r} for field {key!r}")
    raise Malformed(
        offset,
        f"invalid value {token!r} for field {key!r}: not a number, a boolean "
        "(t, T, true, True, TRUE, f, F, false, False, FALSE) or a double-quoted string",
    )


_UNDECODED = re.compile("[\udc80-\udcff]")


def repair_utf8(point: Point) -> bool:
    """Give a point read with `errors="surrogateescape"` the text InfluxDB 1.x answers for it:
    each byte that is not UTF-8 becomes U+FFFD. Returns whether anything was replaced."""

    def fix(text: str) -> str:
        return _UNDECODED.sub("\ufffd", text)

    strings = [value for value in point.fields.values() if isinstance(value, str)]
    text = "".join([point.measurement, *point.fields, *strings, *(k + v for k, v in point.tags)])
    if not _UNDECODED.search(text):
        return False
    point.measurement = fix(point.measurement)
    point.tags = tuple(sorted((fix(k), fix(v)) for k, v in point.tags))
    point.fields = {
        fix(key): fix(value) if isinstance(value, str) else value
        for key, value in point.fields.items()
    }
    point.unsigned = tuple(fix(key) for key in point.unsigned)
    return True


def located_error(
    exc: Malformed, text: str, path: str | None = None, line_no: int | None = None
) -> LineProtocolError:
    offset = exc.offset
    if line_no is not None and "\n" in text[:offset]:
        # a record spanning physical lines: name the physical line of the problem
        line_no += text.count("\n", 0, offset)
        offset -= text.rfind("\n", 0, offset) + 1
    return LineProtocolError(exc.reason, line=text, column=offset + 1, path=path, line_no=line_no)
