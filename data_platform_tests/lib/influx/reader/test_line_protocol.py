"""The line-protocol parser: one line at a time, the fast path and the careful scanner."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

from data_platform.lib.influx.reader.errors import LineProtocolError
from data_platform.lib.influx.reader.files import ScanStats, iter_file_points
from data_platform.lib.influx.reader.line_protocol import Point, parse_careful, parse_precision
from data_platform.lib.influx.reader.model import FieldValue, Tags
from data_platform.lib.influx.reader.parser import LineParser, parse_line

T0 = 1_700_000_000_000_000_000


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- parse_line -------------------------------------------------------------------------------------

VALID: list[tuple[str, str, Tags, dict[str, FieldValue], int | None]] = [
    # measurement
    ("cpu v=1 5", "cpu", (), {"v": 1.0}, 5),
    ("cpu\\ load v=1 5", "cpu load", (), {"v": 1.0}, 5),
    ("cpu\\,x v=1 5", "cpu,x", (), {"v": 1.0}, 5),
    ("cpu\\=x v=1 5", "cpu=x", (), {"v": 1.0}, 5),
    ('cpu\\"x v=1 5', 'cpu"x', (), {"v": 1.0}, 5),
    ("c=u v=1 5", "c=u", (), {"v": 1.0}, 5),
    ('c"u v=1 5', 'c"u', (), {"v": 1.0}, 5),
    ("c\\\\u v=1 5", "c\\\\u", (), {"v": 1.0}, 5),
    ("c\\u v=1 5", "c\\u", (), {"v": 1.0}, 5),
    # tags: sorted, escapes in keys and values
    ("m,b=2,a=1 v=1 5", "m", (("a", "1"), ("b", "2")), {"v": 1.0}, 5),
    ("m,t\\ k=a\\ b v=1 5", "m", (("t k", "a b"),), {"v": 1.0}, 5),
    ("m,t\\,k=a\\,b v=1 5", "m", (("t,k", "a,b"),), {"v": 1.0}, 5),
    ("m,t\\=k=a\\=b v=1 5", "m", (("t=k", "a=b"),), {"v": 1.0}, 5),
    ('m,t\\"k=a\\"b v=1 5', "m", (('t\\"k', 'a\\"b'),), {"v": 1.0}, 5),
    ('m,t="a" v=1 5', "m", (("t", '"a"'),), {"v": 1.0}, 5),
    ("m,t==a v=1 5", "m", (("t", "=a"),), {"v": 1.0}, 5),
    ("m,t=a\\\\\\,b v=1 5", "m", (("t", "a\\\\,b"),), {"v": 1.0}, 5),
    # field keys
    ("m f\\ k=1 5", "m", (), {"f k": 1.0}, 5),
    ("m f\\,k=1 5", "m", (), {"f,k": 1.0}, 5),
    ("m f\\=k=1 5", "m", (), {"f=k": 1.0}, 5),
    ('m f\\"k=1 5', "m", (), {'f"k': 1.0}, 5),
    ('m a"b=1 5', "m", (), {'a"b': 1.0}, 5),
    ('m a=1,b"c=2 5', "m", (), {"a": 1.0, 'b"c': 2.0}, 5),
    # unicode names
    ("温度,場所=東京 値=1 5", "温度", (("場所", "東京"),), {"値": 1.0}, 5),
    (
        "météo,città=Zürich température=21.5 5",
        "météo",
        (("città", "Zürich"),),
        {"température": 21.5},
        5,
    ),
    ("m,t=inv\\ 01 é\\ f=1 5", "m", (("t", "inv 01"),), {"é f": 1.0}, 5),
    # strings
    ('m s="hello" 5', "m", (), {"s": "hello"}, 5),
    ('m s="" 5', "m", (), {"s": ""}, 5),
    ('m s="a, b=c d" 5', "m", (), {"s": "a, b=c d"}, 5),
    ('m s="say \\"hi\\"" 5', "m", (), {"s": 'say "hi"'}, 5),
    ('m s="C:\\\\dir\\\\" 5', "m", (), {"s": "C:\\dir\\"}, 5),
    ('m s="a\\nb\\,c\\ d" 5', "m", (), {"s": "a\\nb\\,c\\ d"}, 5),
    ('m s="line one\nline two" 5', "m", (), {"s": "line one\nline two"}, 5),
    ('m s="x y",v=1,t="p,q" 5', "m", (), {"s": "x y", "v": 1.0, "t": "p,q"}, 5),
    ('m s="ünï cödé ✓" 5', "m", (), {"s": "ünï cödé ✓"}, 5),
    ('m,t=a\\ b s="\\"q\\" x",f\\ k=2i 5', "m", (("t", "a b"),), {"s": '"q" x', "f k": 2}, 5),
    # integers
    ("m v=12i 5", "m", (), {"v": 12}, 5),
    ("m v=-12i 5", "m", (), {"v": -12}, 5),
    ("m v=0i 5", "m", (), {"v": 0}, 5),
    ("m v=9223372036854775807i 5", "m", (), {"v": 2**63 - 1}, 5),
    ("m v=-9223372036854775808i 5", "m", (), {"v": -(2**63)}, 5),
    # unsigned
    ("m v=12u 5", "m", (), {"v": 12}, 5),
    ("m v=18446744073709551615u 5", "m", (), {"v": 2**64 - 1}, 5),
    # floats
    ("m v=1 5", "m", (), {"v": 1.0}, 5),
    ("m v=-1.5 5", "m", (), {"v": -1.5}, 5),
    ("m v=.5 5", "m", (), {"v": 0.5}, 5),
    ("m v=5. 5", "m", (), {"v": 5.0}, 5),
    ("m v=-.5 5", "m", (), {"v": -0.5}, 5),
    ("m v=01 5", "m", (), {"v": 1.0}, 5),
    ("m v=1e3 5", "m", (), {"v": 1000.0}, 5),
    ("m v=1E+3 5", "m", (), {"v": 1000.0}, 5),
    ("m v=-1.5E-3 5", "m", (), {"v": -0.0015}, 5),
    ("m v=1.e5 5", "m", (), {"v": 100000.0}, 5),
    ("m v=1e+21 5", "m", (), {"v": 1e21}, 5),
    ("m v=1.7976931348623157e+308 5", "m", (), {"v": 1.7976931348623157e308}, 5),
    # booleans
    *(
        (f"m v={text} 5", "m", (), {"v": value}, 5)
        for text, value in [
            ("t", True),
            ("T", True),
            ("true", True),
            ("True", True),
            ("TRUE", True),
            ("f", False),
            ("F", False),
            ("false", False),
            ("False", False),
            ("FALSE", False),
        ]
    ),
    # several fields, duplicates (last wins)
    ('m a=1,b=2i,c=t,d="x" 5', "m", (), {"a": 1.0, "b": 2, "c": True, "d": "x"}, 5),
    ("m v=1,v=2 5", "m", (), {"v": 2.0}, 5),
    # timestamps
    ("m v=1", "m", (), {"v": 1.0}, None),
    ("m v=1 -5", "m", (), {"v": 1.0}, -5),
    ("m v=1 0", "m", (), {"v": 1.0}, 0),
    ("m v=1 9223372036854775806", "m", (), {"v": 1.0}, 2**63 - 2),
    ("m v=1 -9223372036854775806", "m", (), {"v": 1.0}, -(2**63) + 2),
    # whitespace InfluxDB tolerates
    ("  m v=1 5", "m", (), {"v": 1.0}, 5),
    ("m  v=1  5", "m", (), {"v": 1.0}, 5),
    ("m v=1 5  ", "m", (), {"v": 1.0}, 5),
    ("m v=1 5\r\n", "m", (), {"v": 1.0}, 5),
    ("\t m v=1 5", "m", (), {"v": 1.0}, 5),
    ("\x00m v=1 5", "m", (), {"v": 1.0}, 5),
    ("m \tv=1 \t5", "m", (), {"v": 1.0}, 5),
    # `\\` before a separator in the series key: the separator is escaped, as InfluxDB reads it
    (
        "cpu,regions=east\\\\ west value=1 1",
        "cpu",
        (("regions", "east\\ west"),),
        {"value": 1.0},
        1,
    ),
    ("cpu\\\\ x v=1 1", "cpu\\ x", (), {"v": 1.0}, 1),
]


@pytest.mark.parametrize(("line", "measurement", "tags", "fields", "time_ns"), VALID)
def test_parse_line(
    line: str, measurement: str, tags: Tags, fields: dict[str, FieldValue], time_ns: int | None
) -> None:
    point = parse_line(line)
    assert point is not None
    assert (point.measurement, point.tags, point.fields, point.time_ns) == (
        measurement,
        tags,
        fields,
        time_ns,
    )
    # bool is an int subclass: the types must match too, not just the values
    assert {k: type(v) for k, v in point.fields.items()} == {k: type(v) for k, v in fields.items()}


def test_unsigned_fields_are_marked() -> None:
    point = parse_line("m a=1u,b=2i,c=3u,c=4i 5")
    assert point == Point("m", (), {"a": 1, "b": 2, "c": 4}, 5, ("a",))


@pytest.mark.parametrize(
    "line", ["", "   ", "\n", "# comment", "   # indented comment", "\t# note", "\t", "\x00\t"]
)
def test_blank_and_comment_lines(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("precision", "factor"),
    [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("u", 1_000), ("n", 1)],
)
def test_precision(precision: str, factor: int) -> None:
    assert parse_precision(precision) == factor
    point = parse_line("m v=1 1700000000", precision=precision)
    assert point is not None and point.time_ns == 1_700_000_000 * factor


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match="unknown timestamp precision 'sec'"):
        parse_precision("sec")


def test_timestamp_out_of_range_after_precision() -> None:
    with pytest.raises(LineProtocolError, match="out of InfluxDB's time range"):
        parse_line("m v=1 9223372036854775", precision="s")


INVALID: list[tuple[str, str]] = [
    ("m", "missing fields"),
    ("m ", "missing fields"),
    ("m,t=a", "missing fields"),
    (",t=a v=1", "missing measurement"),
    ("m v", "field 'v' has no value"),
    ("m v=", "missing value for field 'v'"),
    ("m v=,w=1", "missing value for field 'v'"),
    ("m =1", "missing field key"),
    ("m v=1,=2", "missing field key"),
    ("m v=1,", "missing field key"),
    ("m,t v=1", "tag 't' has no value"),
    ("m,t= v=1", "missing value for tag 't'"),
    ("m,=a v=1", "missing tag key"),
    ("m, v=1", "missing tag key"),
    ("m,t=a=b v=1", "unescaped '=' in the value of tag 't'"),
    ("m,t=1,t=2 v=1", "duplicate tag key 't'"),
    ("m v=1.2.3", "invalid number '1.2.3'"),
    ("m v=1-2", "invalid number '1-2'"),
    ("m v=-", "invalid number '-'"),
    ("m v=1e", "invalid number '1e'"),
    ("m v=0x10", "invalid number '0x10'"),
    ("m v=1_000", "invalid number '1_000'"),
    ("m v=+1", "not a number, a boolean"),
    ("m v=1e400", "out of float64 range"),
    ("m v=NaN", "NaN is not a valid value"),
    ("m v=nan", "NaN is not a valid value"),
    ("m v=inf", "infinities are not"),
    ("m v=-Infinity", "infinities are not"),
    ("m v=1.5i", "invalid integer '1.5i'"),
    ("m v=1i1", "invalid number '1i1'"),
    ("m v=9223372036854775808i", "out of int64 range"),
    ("m v=-1u", "invalid unsigned integer '-1u'"),
    ("m v=18446744073709551616u", "out of uint64 range"),
    ("m v=tRue", "invalid value 'tRue'"),
    ("m v=yes", "invalid value 'yes'"),
    ("m v=truex", "invalid value 'truex'"),
    ('m s="abc', "unterminated string value of field 's'"),
    ('m s="abc\\" 5', "unterminated string value of field 's'"),
    ('m s="a"b 5', "unexpected 'b' after the string value of field 's'"),
    ("m v=1 1.5", "invalid timestamp '1.5'"),
    ("m v=1 +1", "invalid timestamp '+1'"),
    ("m v=1 12abc", "invalid timestamp '12abc'"),
    ("m v=1 1 2", "unexpected '2' after the timestamp"),
    ("m v=1 1\t", "invalid timestamp"),
    ("m v=1 9223372036854775807", "out of InfluxDB's time range"),
    # `\\` then a separator: in a tag the separator is escaped (InfluxDB: invalid tag format),
    # in a field key InfluxDB refuses it
    ("m,t=a\\\\ v=1 5", "unescaped '=' in the value of tag 't'"),
    ("m a\\\\=1 5", "'\\\\' right before '=' in a field key"),
]


@pytest.mark.parametrize(("line", "reason"), INVALID)
def test_parse_line_rejects(line: str, reason: str) -> None:
    with pytest.raises(LineProtocolError) as caught:
        parse_line(line)
    assert reason in caught.value.reason
    assert caught.value.column is not None and caught.value.column >= 1
    assert caught.value.line == line


@pytest.mark.parametrize(("line", "reason"), INVALID)
def test_file_errors_name_file_line_and_column(tmp_path: Path, line: str, reason: str) -> None:
    path = write(tmp_path / "bad.lp", f"# header\nok v=1 1\n{line}\nok v=2 2\n")
    with pytest.raises(LineProtocolError) as caught:
        list(iter_file_points(path))
    error = caught.value
    assert (error.path, error.line_no) == (str(path), 3)
    assert reason in str(error)
    assert f"{path}, line 3, column {error.column}" in str(error)


@pytest.mark.parametrize(
    ("line", "reason"), [("m v=1 5\r", "invalid timestamp"), ("m v=1\r", "invalid number")]
)
def test_bare_cr_is_not_a_line_end(line: str, reason: str) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        parse_line(line)


def test_bare_cr_ending_a_file_is_not_a_line_end(tmp_path: Path) -> None:
    path = tmp_path / "cr.lp"
    path.write_bytes(b"m v=1 1\r\nm v=2 2\r")
    with pytest.raises(LineProtocolError, match="invalid timestamp") as caught:
        list(iter_file_points(path))
    assert caught.value.line_no == 2


def test_default_time_is_truncated_to_the_precision(tmp_path: Path) -> None:
    path = write(tmp_path / "now.lp", "m v=1\n")
    for precision, scale in [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 10**9)]:
        points = list(iter_file_points(path, precision=precision, default_time_ns=T0 + 123_456_789))
        assert points[0].time_ns == T0 + 123_456_789 - (123_456_789 % scale)


def test_invalid_utf8_becomes_one_replacement_per_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad.lp"
    path.write_bytes(b'm\xff,t=a\xe2\x82 v\xc3=1,s="x\xff" 5\nm v=2 6\n')
    stats = ScanStats()
    points = list(iter_file_points(path, stats=stats))
    assert points[0] == Point(
        "m\ufffd", (("t", "a\ufffd\ufffd"),), {"v\ufffd": 1.0, "s": "x\ufffd"}, 5
    )
    assert stats.replaced_utf8_lines == 1


def test_errors_survive_pickling() -> None:
    error = LineProtocolError(
        "invalid number '1.2.3'", line="m v=1.2.3", column=5, path="x.lp", line_no=9
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.line, copy.column, copy.path, copy.line_no) == (
        "invalid number '1.2.3'",
        "m v=1.2.3",
        5,
        "x.lp",
        9,
    )
    assert str(copy) == str(error)


def test_error_message_truncates_long_lines() -> None:
    line = "m v=1.2.3 " + "x" * 500
    with pytest.raises(LineProtocolError) as caught:
        parse_line(line)
    assert len(str(caught.value)) < 320
    assert caught.value.line == line


def test_fast_path_and_careful_scanner_agree() -> None:
    """Random edits of tricky lines: whenever the fast path accepts, the scanner agrees."""
    rnd = random.Random(20240611)
    atoms = [*'ma,= "\\10.-eEiutf_é\t', "true", "\\ ", "\\,", "\\=", '\\"', "\\\\", "nan", "1.5"]
    templates = [
        "m,t=a v=1 1",
        'm s="x" 5',
        'm,a=b,c=d x=1i,y="q, r",z=t 100',
        'm v=1.5e3,s="a\\"b" -5',
        "a\\ b,c\\,d=e\\=f g\\ h=1u 2",
    ]
    accepted = 0
    for _ in range(4000):
        chars = list(rnd.choice(templates))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(chars) + 1)
            if rnd.random() < 0.5:
                chars.insert(at, rnd.choice(atoms))
            elif at < len(chars):
                chars[at] = rnd.choice(atoms)
        line = "".join(chars)
        fast = LineParser(1).parse_fast(line)
        if fast is None:
            continue
        accepted += 1
        assert parse_careful(line, 1) == fast, line
    assert accepted > 500
