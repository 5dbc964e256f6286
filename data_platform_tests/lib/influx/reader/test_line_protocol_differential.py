"""The line-protocol reader against a real influxd: generated and mutated lines, both readings.

Seeded random lines (names with escapes, spaces, commas, equals signs, quotes and unicode; every
field type; with and without timestamps; every precision) and random byte-level mutations of
them go once to influxd's `/write` and once through `iter_file_points`. What influxd stores
(`SELECT * ... GROUP BY *`, `SHOW FIELD KEYS` for the types) must equal what the reader yields,
except for the differences `line_protocol.py` lists, each asserted here.

Every field key ends in `_<line number><letter>x`, so each stored value names the line it came
from and lines never share a field (no type conflicts between lines, no overwrites).

The suite uses one fixed seed; `DATA_PLATFORM_LP_SEED=<int>` runs other lines (read when the
module is collected), e.g. `DATA_PLATFORM_LP_SEED=7 uv run pytest -q
data_platform_tests/lib/influx/reader/test_line_protocol_differential.py`.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from data_platform.lib.influx.reader.files import ScanStats, iter_file_points
from data_platform.lib.influx.reader.line_protocol import PRECISION_NS
from data_platform.lib.influx.reader.model import Tags
from data_platform.utils.local_servers import LocalInfluxd

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("DATA_PLATFORM_LP_SEED") or 20260611)
LINES_PER_PRECISION = 900
PRECISIONS = ("ns", "us", "ms", "s")
_WRITE_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}  # InfluxDB 1.x's spelling
_NAME_CHARS = [*"abcxyz019_-.:/", " ", ",", "=", '"', "\\", "é", "ü", "温", "✓", "\t", "#"]
_MUTATION_BYTES = [*b' ,="\\=#\t\r0.-eiu', 0x00, 0xFF, 0xC3, 0xE2]
_TOKEN = re.compile(r"_([0-9]+)[a-h]x")

Value = tuple[str, object]  # (InfluxDB field type, value)
Stored = tuple[str, tuple[tuple[str, str], ...], str, int, Value]


def _name(rnd: random.Random, specials: str) -> str:
    """A random name escaped for a position whose separators are `specials`."""
    chars = [rnd.choice(_NAME_CHARS) for _ in range(rnd.randint(1, 6))]
    out = []
    for char in chars:
        if char in specials:
            out.append("\\" + char)
        elif char == "\\":
            out.append("\\" if rnd.random() < 0.7 else "\\\\")
        else:
            out.append(char)
    text = "".join(out)
    # a backslash must not end up before a separator it was not meant to escape
    return text.rstrip("\\") or "n"


def _value(rnd: random.Random) -> str:
    kind = rnd.randrange(9)
    if kind == 0:
        return repr(rnd.uniform(-1e6, 1e6))
    if kind == 1:
        return rnd.choice(["1", "-0", ".5", "5.", "1e3", "-1.5E-3", "01", "1e+21", "123456789"])
    if kind == 2:
        return f"{rnd.randint(-(2**63), 2**63 - 1)}i"
    if kind == 3:
        return f"{rnd.randint(-1000, 1000)}i"
    if kind == 4:
        return f"{rnd.randint(0, 2**64 - 1)}u"
    if kind == 5:
        return rnd.choice(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"])
    chars = [rnd.choice([*_NAME_CHARS, "\\\\", '\\"']) for _ in range(rnd.randint(0, 8))]
    text = "".join(c for c in chars if c not in ('"', "\\"))
    return f'"{text}"'


def valid_line(rnd: random.Random, index: int, precision: str) -> str:
    measurement = _name(rnd, ", ")
    if measurement[0] == "#":
        measurement = "m" + measurement
    tags = {}
    for _ in range(rnd.randint(0, 3)):
        tags[_name(rnd, ", =").replace("#", "h")] = _name(rnd, ", =")
    fields = [
        f"{_name(rnd, ', =')}_{index}{'abcdefgh'[n]}x={_value(rnd)}"
        for n in range(rnd.randint(1, 4))
    ]
    line = measurement + "".join(f",{k}={v}" for k, v in tags.items() if k != "time")
    line += " " + ",".join(fields)
    if rnd.random() < 0.8:
        limit = 1_500_000_000_000_000_000 // PRECISION_NS[precision]
        line += f" {rnd.randint(-limit, limit)}"
    return line


def mutate(rnd: random.Random, line: bytes, index: int) -> bytes:
    """One to three byte edits, none inside a field key's line number (it names the line)."""
    data = bytearray(line)
    token = re.compile(rb"_%d[a-h]x" % index)
    for _ in range(rnd.randint(1, 3)):
        protected = {i for m in token.finditer(bytes(data)) for i in range(m.start(), m.end())}
        at = rnd.randrange(len(data) + 1)
        if at in protected:
            continue
        action = rnd.randrange(7)
        if action == 0 and at < len(data):
            del data[at]
        elif action == 1:
            data.insert(at, rnd.choice(_MUTATION_BYTES))
        elif action == 2 and at < len(data):
            data[at] = rnd.choice(_MUTATION_BYTES)
        elif action == 3:
            spaces = [i for i, b in enumerate(data) if b in b" ," and i not in protected]
            if spaces:
                i = rnd.choice(spaces)
                data[i] = ord(",") if data[i] == ord(" ") else ord(" ")
        elif action == 4:
            data[0:0] = rnd.choice([b" ", b"\t", b"\t ", b"\x00", b"# ", b"\t# "])
        elif action == 5:
            data += rnd.choice([b"\r", b" ", b"  "])
        else:
            data.insert(at, ord(" "))
    return bytes(data)


def generate(seed: int, precision: str, count: int) -> list[bytes]:
    """`count` lines, about half of them mutated; each line's index is in its field keys."""
    rnd = random.Random(f"{seed}-{precision}")
    lines = []
    for index in range(count):
        line = valid_line(rnd, index, precision).encode()
        if rnd.random() < 0.5:
            line = mutate(rnd, line, index)
        lines.append(line)
    return lines


# -- InfluxDB's reading ---------------------------------------------------------------------------


def _request(url: str, path: str, params: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{url}{path}?{urllib.parse.urlencode(params)}", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def stored_measurements(server: LocalInfluxd, db: str) -> set[str]:
    _, body = _request(server.url, "/query", {"db": db, "q": "SHOW MEASUREMENTS"})
    series = json.loads(body)["results"][0].get("series", [])
    return {row[0] for s in series for row in s["values"]}


def influx_reading(server: LocalInfluxd, db: str) -> set[Stored]:
    """Every stored value as (measurement, tags, field, time, (type, value)).

    InfluxDB 1.x stores a measurement whose name has a backslash, but `SELECT` cannot name
    it: such values are missing here, and `stored_measurements` lists the name.
    """
    _, body = _request(server.url, "/query", {"db": db, "q": "SHOW FIELD KEYS"})
    types: dict[tuple[str, str], str] = {}
    for series in json.loads(body)["results"][0].get("series", []):
        for key, kind in series["values"]:
            types[series["name"], key] = kind
    query = {"db": db, "q": "SELECT * FROM /.*/ GROUP BY *", "epoch": "ns"}
    _, body = _request(server.url, "/query", query)
    stored: set[Stored] = set()
    for series in json.loads(body)["results"][0].get("series", []):
        name = series["name"]
        tags = tuple(sorted((k, v) for k, v in series.get("tags", {}).items() if v != ""))
        columns = series["columns"]
        for row in series["values"]:
            for column, value in zip(columns[1:], row[1:], strict=True):
                if value is not None:
                    kind = types[name, column]
                    if kind == "float":
                        value = float(value)
                    stored.add((name, tags, column, row[0], (kind, value)))
    return stored


def influx_alone(
    server: LocalInfluxd, lines: list[bytes], params: dict[str, str], scale: int
) -> set[Stored]:
    """What InfluxDB stores of each line written alone (one request each, into a fresh
    database); default timestamps as -1."""
    db = f"{params['db']}_alone"
    server.create_database(db)
    started = time.time_ns()
    for line in lines:
        _request(server.url, "/write", {**params, "db": db}, line)
    ended = time.time_ns()
    stored = influx_reading(server, db)
    return Comparison(stored, Reading(), lines, started, ended, scale).normalized(stored, None)


def _alone_comparable(line: bytes, index: int, alone: Reading, ours: set[Stored]) -> bool:
    """Whether a line written alone must be stored as the reader reads it: no other listed
    difference applies to it."""
    return (
        _is_utf8(line)
        and index not in alone.unsigned_lines
        and not any("\\" in stored[0] for stored in ours)  # unselectable
        and not line.endswith(b"\r")
        and "after the string value" not in _rejection(line)
    )


# -- the reader's reading -------------------------------------------------------------------------


_TYPE = {float: "float", int: "integer", bool: "boolean", str: "string"}


@dataclass
class Reading:
    stored: set[Stored] = field(default_factory=set)
    unsigned_lines: set[int] = field(default_factory=set)
    stats: ScanStats = field(default_factory=ScanStats)


def reader_reading(path: Path, precision: str, default_time_ns: int) -> Reading:
    reading = Reading()
    points = iter_file_points(
        path,
        precision=precision,
        default_time_ns=default_time_ns,
        on_error="skip",
        stats=reading.stats,
    )
    for point in points:
        assert point.time_ns is not None
        values: set[Stored] = set()
        for key, value in point.fields.items():
            kind = "unsigned" if key in point.unsigned else _TYPE[type(value)]
            values.add((point.measurement, point.tags, key, point.time_ns, (kind, value)))
        if point.unsigned:
            reading.unsigned_lines.update(_by_line(values))
        reading.stored |= values
    return reading


def reader_alone(lines: list[bytes], precision: str, default_time_ns: int) -> Reading:
    """The reader's reading of each line alone (a file each), together."""
    out = Reading()
    with tempfile.TemporaryDirectory() as folder:
        for n, line in enumerate(lines):
            path = Path(folder) / f"{n}.lp"
            path.write_bytes(line)
            reading = reader_reading(path, precision, default_time_ns)
            out.stored |= reading.stored
            out.unsigned_lines |= reading.unsigned_lines
    return out


def _line_of(stored: Stored) -> int:
    """The line a stored value came from: the last line number in its field key, or where a
    mutation moved it (a space made a comma), in its tags or measurement; -1 if none."""
    measurement, tags, key, _, _ = stored
    return _last_line_number(key, *(k + "=" + v for k, v in reversed(tags)), measurement)


def _last_line_number(*texts: str) -> int:
    for text in texts:
        numbers = _TOKEN.findall(text)
        if numbers:
            return int(numbers[-1])
    return -1


@dataclass
class Comparison:
    influx: set[Stored]
    reader: Reading
    lines: list[bytes]
    write_started_ns: int
    write_ended_ns: int
    scale: int

    def normalized(self, stored: set[Stored], default: int | None) -> set[Stored]:
        """Default timestamps become -1: InfluxDB's is the server's clock during the write."""
        out = set()
        for measurement, tags, key, time_ns, value in stored:
            if default is None:
                is_default = self.write_started_ns - self.scale <= time_ns <= self.write_ended_ns
            else:
                is_default = time_ns == default
            if is_default:
                assert time_ns % self.scale == 0, (key, time_ns)
                time_ns = -1
            out.add((measurement, tags, key, time_ns, value))
        return out


@pytest.mark.parametrize("precision", PRECISIONS)
def test_reader_reads_lines_as_influxdb_stores_them(
    influxd: LocalInfluxd, influx_db: str, tmp_path: Path, precision: str
) -> None:
    lines = generate(SEED, precision, LINES_PER_PRECISION)
    body = b"\n".join(lines) + b"\n"
    scale = PRECISION_NS[precision]

    # A name that is not UTF-8 makes InfluxDB 1.x refuse the whole request (HTTP 500), so
    # lines that are not UTF-8 go one per request.
    undecodable = [line for line in lines if not _is_utf8(line)]
    params = {"db": influx_db, "precision": _WRITE_PRECISION[precision]}
    started = time.time_ns()
    status, answer = _request(
        influxd.url, "/write", params, b"\n".join(filter(_is_utf8, lines)) + b"\n"
    )
    assert status in (204, 400), answer  # 400: InfluxDB writes the good lines, names the bad
    refused_whole = set()
    for line in undecodable:
        status, answer = _request(influxd.url, "/write", params, line)
        if status == 500:
            assert b"contains invalid UTF-8" in answer
            refused_whole.add(line)
        else:
            assert status in (204, 400), answer
    ended = time.time_ns()
    influx = influx_reading(influxd, influx_db)

    path = tmp_path / "lines.lp"
    path.write_bytes(body)
    reading = reader_reading(path, precision, started)
    default = started - started % scale  # a line without timestamp: the time, truncated
    comparison = Comparison(influx, reading, lines, started, ended, scale)
    ours = comparison.normalized(reading.stored, default)
    theirs = comparison.normalized(influx, None)

    only_ours = _by_line(ours - theirs)
    only_theirs = _by_line(theirs - ours)
    measurements = stored_measurements(influxd, influx_db)
    refused = {_index_of(line, lines) for line in refused_whole}
    influx_series = {(m, tags) for m, tags, _, _, _ in influx}
    differences = _explain(
        lines, reading, only_ours, only_theirs, measurements, refused, influx_series
    )
    unexplained = {
        i: (lines[i] if 0 <= i < len(lines) else None, only_ours.get(i), only_theirs.get(i))
        for i, why in differences.items()
        if why is None
    }
    assert not unexplained, unexplained
    assert -1 not in only_ours and -1 not in only_theirs

    # a joined line differs by the cut only: alone, InfluxDB stores what the reader reads
    joined = sorted(i for i, why in differences.items() if why == "joined")
    theirs_alone = _by_line(influx_alone(influxd, [lines[i] for i in joined], params, scale))
    alone = reader_alone([lines[i] for i in joined], precision, started)
    ours_alone = _by_line(comparison.normalized(alone.stored, default))
    compared = [
        i for i in joined if _alone_comparable(lines[i], i, alone, ours_alone.get(i, set()))
    ]
    for i in compared:
        assert theirs_alone.get(i, set()) == ours_alone.get(i, set()), lines[i]
    assert compared or not joined

    # a name that is not UTF-8: InfluxDB 1.x may refuse the whole write (HTTP 500), the
    # reader reads the line with U+FFFD for each bad byte, as 1.x answers where it stores it
    assert reading.stats.replaced_utf8_lines > 0
    for line in refused_whole:
        # listed where it differs: the reader may refuse the line too, and 1.x answers 500
        # for some lines it stores all the same
        assert differences.get(_index_of(line, lines), "same") in ("refused-name", "same")

    # the listed differences occurred, and only as listed
    reasons = set(differences.values())
    assert "unsigned" in reasons
    assert "crlf" in reasons
    assert len(ours) > LINES_PER_PRECISION
    assert any(time_ns == -1 for _, _, _, time_ns, _ in ours)
    assert any("\ufffd" in str(s) for s in ours), "no invalid UTF-8 was compared"


@pytest.mark.parametrize(
    ("opening", "tags"),
    [
        # a space at the line's start starts scanLine's count; `\\=` adds an `=` to it
        (b' m,k\\\\=a=b f=1,g"h=2 10', (("k\\=a", "b"),)),
        # scanLine reads the space after `\\` as the end of the series key
        (b'm,t\\\\ x=1 f=1,g"h=2 10', (("t\\ x", "1"),)),
    ],
    ids=["leading-space", "space-after-backslashes"],
)
def test_influxdb_joins_the_lines_after_a_quote_it_counts_as_opening(
    influxd: LocalInfluxd, influx_db: str, tmp_path: Path, opening: bytes, tags: Tags
) -> None:
    """The listed difference on its own: 1.x refuses two valid lines together (scanLine takes
    the quote in `g"h` as opening a string), stores each alone as the reader reads it."""
    following = b"m j=4i 20"
    assert scanline_blocks([opening, following]) == [[0, 1]]

    status, answer = _request(influxd.url, "/write", {"db": influx_db}, opening + b"\n" + following)
    assert status == 400 and b"point is invalid" in answer, answer
    assert influx_reading(influxd, influx_db) == set()

    path = tmp_path / "lines.lp"
    path.write_bytes(opening + b"\n" + following + b"\n")
    read = reader_reading(path, "ns", 0).stored
    expected = {
        ("m", tags, "f", 10, ("float", 1.0)),
        ("m", tags, 'g"h', 10, ("float", 2.0)),
        ("m", (), "j", 20, ("integer", 4)),
    }
    assert read == expected
    alone = influx_alone(influxd, [opening, following], {"db": influx_db}, 1)
    assert alone == expected


def test_influxdb_queries_one_spelling_of_a_series(
    influxd: LocalInfluxd, influx_db: str, tmp_path: Path
) -> None:
    """The listed storage difference on its own: `t=\\=a` and `t==a` are the same tag to
    1.x and to the reader; 1.x lists one series and returns the points of one spelling."""
    body = b"m,t=\\=a a_0ax=1i 10\nm,t==a b_1ax=2i 20\n"
    lines = body.splitlines()
    assert raw_series_key(lines[0]) != raw_series_key(lines[1])
    status, answer = _request(influxd.url, "/write", {"db": influx_db}, body)
    assert status == 204, answer
    series = json.loads(influxd.query("SHOW SERIES", influx_db))["results"][0]["series"]
    assert len(series[0]["values"]) == 1

    path = tmp_path / "lines.lp"
    path.write_bytes(body)
    reading = reader_reading(path, "ns", 0)
    tags = (("t", "=a"),)
    assert reading.stored == {
        ("m", tags, "a_0ax", 10, ("integer", 1)),
        ("m", tags, "b_1ax", 20, ("integer", 2)),
    }
    theirs = influx_reading(influxd, influx_db)
    assert len(theirs) == 1 and theirs < reading.stored
    assert respelled_lines(lines, reading, {("m", tags)}) == {0, 1}


def _by_line(stored: set[Stored]) -> dict[int, set[Stored]]:
    out: dict[int, set[Stored]] = {}
    # a field key a mutation made of other text (`1 -52=62`) names no line: it belongs to
    # the line of its point's other fields, else to one named in its string value
    points: dict[tuple[str, tuple[tuple[str, str], ...], int], set[int]] = {}
    for item in stored:
        index = _line_of(item)
        if index >= 0:
            points.setdefault((item[0], item[1], item[3]), set()).add(index)
    for item in stored:
        index = _line_of(item)
        if index < 0:
            owners = points.get((item[0], item[1], item[3]), set())
            if len(owners) == 1:
                index = next(iter(owners))
            elif isinstance(item[4][1], str):
                index = _last_line_number(item[4][1])
        out.setdefault(index, set()).add(item)
    return out


def scanline_blocks(lines: list[bytes]) -> list[list[int]]:
    """The lines InfluxDB 1.x reads as one record each, as scanLine in its models/points.go
    splits a request body (`lines` joined by newlines).

    scanLine counts quotes, not the grammar: from the first space on (a space at the start of
    the line, or one after `\\\\` in a tag, counts too) a quote seen when more `=` than `,`
    were counted opens or closes a "string", also in a field key or a tag value; a newline in
    it does not end the record. A backslash skips the next byte, a newline too (unless it is
    one of the body's last two bytes).
    """
    body = b"\n".join(lines) + b"\n"
    starts = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    blocks: list[list[int]] = []
    line_no = i = 0
    while i < len(body):
        start = i
        fields = quoted = False
        equals = commas = 0
        while i < len(body):
            char = body[i]
            if char == 0x5C and i + 2 < len(body):
                i += 2
                continue
            fields = fields or char == 0x20
            if fields and not quoted and char in (0x3D, 0x2C):
                equals += char == 0x3D
                commas += char == 0x2C
            elif fields and char == 0x22 and equals > commas:
                quoted = not quoted
            elif char == 0x0A and not quoted:
                break
            i += 1
        block = []
        while line_no < len(starts) and starts[line_no] <= i:
            if starts[line_no] >= start:
                block.append(line_no)
            line_no += 1
        if block:
            blocks.append(block)
        i += 1
    return blocks


def _explain(
    lines: list[bytes],
    reading: Reading,
    only_ours: dict[int, set[Stored]],
    only_theirs: dict[int, set[Stored]],
    measurements: set[str],
    refused: set[int],
    influx_series: set[tuple[str, tuple[tuple[str, str], ...]]],
) -> dict[int, str | None]:
    """Why each line differs: one of the differences `line_protocol.py` lists, or None."""
    # the batch InfluxDB read held the UTF-8 lines only
    batch = [index for index, line in enumerate(lines) if _is_utf8(line)]
    joined = {
        batch[i]
        for block in scanline_blocks([lines[i] for i in batch])
        if len(block) > 1
        for i in block
    }
    respelled = respelled_lines(lines, reading, influx_series)
    out: dict[int, str | None] = {}
    for index in only_ours.keys() | only_theirs.keys():
        line = lines[index] if 0 <= index < len(lines) else b""
        why: str | None = None
        if index in refused and index in only_ours and index not in only_theirs:
            why = "refused-name"
        elif index in joined:
            why = "joined"  # InfluxDB cut the records elsewhere: the lines are read alone too
        elif index in only_ours and index not in only_theirs:
            # InfluxDB 1.x refused a line the reader takes
            names = {stored[0] for stored in only_ours[index]}
            if index in respelled:
                why = "respelled"
            elif all("\\" in name for name in names) and measurements:
                why = "unselectable"
            elif index in reading.unsigned_lines:
                why = "unsigned"
            elif line.endswith(b"\r"):
                why = "crlf"
        if line.endswith(b"\r") and why is None:
            why = "crlf"  # 1.x reads the \r as part of the line, also where it takes it
        elif (
            why is None
            and index in only_theirs
            and index not in only_ours
            and "after the string value" in _rejection(line)
        ):
            why = "after-quote"  # InfluxDB 1.x took a line the reader refuses
        if why is None and _reader_joined(lines, index):
            why = "joined"  # the reader joined it to a string left open before it
        out[index] = why
    return out


_KEY_END = re.compile(r"(?<!\\) ")
_TAG_SEPARATOR = re.compile(r"(?<!\\),")


def raw_series_key(line: bytes) -> tuple[str, ...]:
    """A line's series key as written: measurement, then the tags sorted (InfluxDB sorts
    them), with their escapes. In the series key a separator after a backslash is escaped."""
    text = line.decode(errors="replace").lstrip(" \t\x00")
    key = _KEY_END.split(text, maxsplit=1)[0]
    measurement, *tags = _TAG_SEPARATOR.split(key)
    return (measurement, *sorted(tags))


def respelled_lines(
    lines: list[bytes],
    reading: Reading,
    influx_series: set[tuple[str, tuple[tuple[str, str], ...]]],
) -> set[int]:
    """Lines of a series InfluxDB stores that other lines spell differently (`\\"` and `"`
    in a measurement, `\\=a` and `=a` in a tag value): 1.x keeps one spelling of the series
    key in its index, and a query returns the points of that spelling only."""
    spellings: dict[tuple[str, tuple[tuple[str, str], ...]], dict[tuple[str, ...], set[int]]]
    spellings = {}
    for index, items in _by_line(reading.stored).items():
        if 0 <= index < len(lines):
            for measurement, tags, _, _, _ in items:
                series = spellings.setdefault((measurement, tags), {})
                series.setdefault(raw_series_key(lines[index]), set()).add(index)
    return {
        index
        for series, spelled in spellings.items()
        if len(spelled) > 1 and series in influx_series
        for indexes in spelled.values()
        for index in indexes
    }


READER_JOIN_REACH = 8
"""How many lines back a string the reader sees open may have begun."""


def _reader_joined(lines: list[bytes], index: int) -> bool:
    """Whether a line before `index` (one of the last few) opens a string the reader sees left
    open on its line, so that the reader may have joined `index` to it."""
    before = lines[max(0, index - READER_JOIN_REACH) : max(0, index)]
    return any("unterminated string" in _rejection(line) for line in before)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


@functools.cache
def _rejection(line: bytes) -> str:
    """Why the files reader refuses `line` alone, or "" when it takes it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "line.lp"
        path.write_bytes(line)
        stats = ScanStats()
        list(iter_file_points(path, on_error="skip", stats=stats))
    return stats.errors[0].reason if stats.errors else ""


def _index_of(line: bytes, lines: list[bytes]) -> int:
    return lines.index(line)
