"""The columnar msgpack decode against the row decode it stands beside, on generated bodies."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any, cast

import msgpack
import numpy as np
import pytest

from data_platform.lib.influx.reader.model import SeriesColumns, ValueColumn
from data_platform.lib.influx.reader.wire import (
    MIN_COLUMN_ROWS,
    Truncated,
    ValueColumns,
    documents_from_arrays,
    msgpack_column_documents,
    msgpack_documents,
)

T0_NS = 1_704_067_200_000_000_000

# -- a msgpack writer that picks each cell's encoding, as servers do ------------------------------


def pack(value: Any) -> bytes:
    return cast(bytes, msgpack.packb(value))


def map_of(items: list[tuple[str, bytes]]) -> bytes:
    return _header(len(items), 0x80, 0xDE) + b"".join(pack(k) + v for k, v in items)


def array_of(items: list[bytes]) -> bytes:
    return _header(len(items), 0x90, 0xDC) + b"".join(items)


def _header(count: int, fix: int, wide: int) -> bytes:
    if count < 16:
        return bytes([fix | count])
    if count < 1 << 16:
        return bytes([wide]) + struct.pack(">H", count)
    return bytes([wide + 1]) + struct.pack(">I", count)


# Each cell kind: how it encodes a value, and a value it can hold.
ENCODINGS: dict[str, tuple[Callable[[Any], bytes], Callable[[random.Random], Any]]] = {
    "fixint": (lambda v: struct.pack(">B", v), lambda r: r.randrange(128)),
    "negfixint": (lambda v: struct.pack(">b", v), lambda r: r.randrange(-32, 0)),
    "u8": (lambda v: b"\xcc" + struct.pack(">B", v), lambda r: r.randrange(256)),
    "u16": (lambda v: b"\xcd" + struct.pack(">H", v), lambda r: r.randrange(1 << 16)),
    "u32": (lambda v: b"\xce" + struct.pack(">I", v), lambda r: r.randrange(1 << 32)),
    "u64": (lambda v: b"\xcf" + struct.pack(">Q", v), lambda r: r.randrange(1 << 63)),
    "u64big": (lambda v: b"\xcf" + struct.pack(">Q", v), lambda r: r.randrange(1 << 63, 1 << 64)),
    "i8": (lambda v: b"\xd0" + struct.pack(">b", v), lambda r: r.randrange(-128, 128)),
    "i16": (lambda v: b"\xd1" + struct.pack(">h", v), lambda r: r.randrange(-(1 << 15), 1 << 15)),
    "i32": (lambda v: b"\xd2" + struct.pack(">i", v), lambda r: r.randrange(-(1 << 31), 1 << 31)),
    "i64": (
        lambda v: b"\xd3" + struct.pack(">q", v),
        lambda r: r.choice([-(1 << 63), (1 << 63) - 1, r.randrange(-(1 << 63), 1 << 63)]),
    ),
    "f32": (lambda v: b"\xca" + struct.pack(">f", v), lambda r: r.uniform(-1e6, 1e6)),
    "f64": (
        lambda v: b"\xcb" + struct.pack(">d", v),
        lambda r: r.choice([r.uniform(-1e300, 1e300), math.nan, -math.inf, -0.0, 2.0**53 + 1]),
    ),
    "nil": (lambda v: b"\xc0", lambda r: None),
    "bool": (lambda v: b"\xc3" if v else b"\xc2", lambda r: r.random() < 0.5),
    "str": (pack, lambda r: "".join(r.choice('aé€ ,="') for _ in range(r.randrange(40)))),
}
INTS = ["fixint", "negfixint", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]
KINDS = [*INTS, "u64big", "f32", "f64", "nil", "bool", "str"]


def time_cell(rng: random.Random, i: int, kind: str) -> bytes:
    if kind == "i64":
        return b"\xd3" + struct.pack(">q", T0_NS + i * 1_000_003 + rng.randrange(3))
    encode, draw = ENCODINGS[kind]
    return encode(draw(rng))


def rows_of(rng: random.Random, count: int, layout: list[str], mixed: float) -> bytes:
    """`count` rows `[time, cells...]` of `layout`; with `mixed`, that share of the cells get
    another kind (so the rows' byte layouts differ)."""
    time_kind = "i64" if rng.random() < 0.8 else rng.choice(INTS)
    rows = []
    for i in range(count):
        cells = [time_cell(rng, i, time_kind)]
        for kind in layout:
            if rng.random() < mixed:
                kind = rng.choice(KINDS)
            encode, draw = ENCODINGS[kind]
            cells.append(encode(draw(rng)))
        rows.append(array_of(cells))
    return array_of(rows)


def series_map(rng: random.Random, name: str, layout: list[str], count: int, mixed: float) -> bytes:
    items = [("name", pack(name))]
    if rng.random() < 0.7:
        items.append(("tags", pack({"host": f"h{rng.randrange(5)}", "empty": ""})))
    items.append(("columns", pack(["time", *(f"f{i}" for i in range(len(layout)))])))
    items.append(("values", rows_of(rng, count, layout, mixed)))
    if rng.random() < 0.2:
        items.append(("partial", pack(True)))
    return map_of(items)


def series_array(
    rng: random.Random, name: str, layout: list[str], count: int, mixed: float
) -> bytes:
    """InfluxDB 3.7+: the series struct as an array, empty members left out."""
    members = [pack(name)] if rng.random() < 0.9 else []
    if rng.random() < 0.7:
        members.append(pack({"host": f"h{rng.randrange(5)}"}))
    members.append(pack(["time", *(f"f{i}" for i in range(len(layout)))]))
    members.append(rows_of(rng, count, layout, mixed))
    if rng.random() < 0.2:
        members.append(pack(True))
    return array_of(members)


def body(rng: random.Random, arrays: bool, documents: int = 6, seed: int = 0) -> bytes:
    out = b""
    for d in range(documents):
        series = []
        for s in range(rng.randrange(1, 4)):
            width = rng.randrange(0, 6)
            if d == s == 0:  # at least one series for the columns: all floats, one layout
                layout, mixed = ["f64"] * (width + 1), 0.0
            elif rng.random() < 0.6:
                layout = [rng.choice(KINDS) for _ in range(width)]  # one layout for all rows
                mixed = 0.0
            else:
                layout = [rng.choice(["f64", "i64", "bool"]) for _ in range(width)]
                mixed = rng.choice([0.01, 0.3])
            count = rng.choice([0, 1, MIN_COLUMN_ROWS - 1, MIN_COLUMN_ROWS, 300, 2000])
            if d == s == 0:
                count = 70_000 if seed % 2 else 300  # 70,000 rows: the array32 header
            make = series_array if arrays else series_map
            series.append(make(rng, f"m{s}", layout, count, mixed))
        if arrays:
            statement = array_of([pack(d), array_of(series), *([pack(True)] * (d % 2))])
            out += array_of([array_of([statement])])
        else:
            result = map_of([("statement_id", pack(d)), ("series", array_of(series))])
            out += map_of([("results", array_of([result]))])
    return out


def pieces(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """The body cut where HTTP might cut it: anywhere, in pieces of 1 byte to 256 KiB."""
    at = 0
    while at < len(data):
        size = rng.choice([1, 7, 4096, 65536, 262144])
        yield data[at : at + size]
        at += size


# -- comparison -----------------------------------------------------------------------------------


def typed(value: Any) -> Any:
    """The value with its types spelled out (2 != 2.0 != True) and NaN equal to itself."""
    if isinstance(value, ValueColumns):
        return typed(value.rows())
    if isinstance(value, dict):
        return {"dict": {k: typed(v) for k, v in value.items()}}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float):
        return ("float", struct.pack(">d", value) if not math.isnan(value) else "nan")
    return (type(value).__name__, value)


def columnar(value: Any) -> int:
    """How many arrays of rows the decode gave as columns."""
    if isinstance(value, ValueColumns):
        return 1
    if isinstance(value, dict):
        return sum(columnar(v) for v in value.values())
    if isinstance(value, list):
        return sum(columnar(v) for v in value)
    return 0


@pytest.mark.parametrize("arrays", [False, True], ids=["maps", "arrays"])
@pytest.mark.parametrize("seed", range(6))
def test_columnar_decode_equals_the_row_decode(seed: int, arrays: bool) -> None:
    rng = random.Random(seed)
    data = body(rng, arrays, seed=seed)
    rows = list(msgpack_documents(iter([data])))
    columns = list(msgpack_column_documents(pieces(rng, data)))
    if arrays:
        rows, columns = (
            list(documents_from_arrays(iter(rows))),
            list(documents_from_arrays(iter(columns))),
        )
    assert typed(columns) == typed(rows)
    assert columnar(columns) > 0


def test_only_rows_of_one_layout_become_columns() -> None:
    rng = random.Random(7)
    one = rows_of(rng, 200, ["f64", "i64", "bool", "nil", "fixint"], 0.0)
    whole_floats = array_of(  # 3.x writes 2.0 as 2: a float column whose layout changes
        [array_of([time_cell(rng, i, "i64"), pack(1.5 if i % 9 else 2)]) for i in range(200)]
    )
    text = rows_of(rng, 200, ["str"], 0.0)
    big = rows_of(rng, 200, ["u64big"], 0.0)
    short = rows_of(rng, MIN_COLUMN_ROWS - 1, ["f64"], 0.0)
    for values, expect in [(one, 1), (whole_floats, 0), (text, 0), (big, 0), (short, 0)]:
        data = map_of([("values", values)])
        decoded = next(msgpack_column_documents(iter([data])))
        assert columnar(decoded) == expect
        assert typed(decoded) == typed(msgpack.unpackb(data))


def test_rows_whose_layout_changes_a_few_times_decode_as_columns_in_runs() -> None:
    rng = random.Random(11)

    def rows(value: Callable[[int], Any], count: int = 600) -> bytes:
        cells = [
            [time_cell(rng, i, "i64"), pack(value(i)), pack(i * 0.5 + 0.25)] for i in range(count)
        ]
        return array_of([array_of(c) for c in cells])

    growing = rows(lambda i: None if i < 100 else (i - 300) * 150)  # nil, then int8 to int32
    flags = rows(lambda i: None if i % 200 < 100 else i % 3 == 0)  # booleans in runs of nils
    too_many = rows(lambda i: 2 ** (i % 40))  # a new width every few rows, 40 times over
    two_types = rows(lambda i: 1.5 if i < 300 else 7)  # float, then int
    for values, expect in [(growing, 1), (flags, 1), (too_many, 0), (two_types, 0)]:
        data = map_of([("values", values)])
        decoded = next(msgpack_column_documents(iter([data])))
        assert columnar(decoded) == expect
        assert typed(decoded) == typed(msgpack.unpackb(data))


def test_a_column_of_booleans_and_nils_keeps_both() -> None:
    values = array_of(
        [
            array_of(
                [
                    time_cell(random.Random(i), i, "i64"),
                    pack([True, None, False][i % 3]),
                    pack(None),
                ]
            )
            for i in range(90)
        ]
    )
    decoded = next(msgpack_column_documents(iter([map_of([("values", values)])])))["values"]
    assert isinstance(decoded, ValueColumns)
    flags, empty = decoded.cells
    assert flags.values is not None and flags.values.dtype == np.bool_
    assert flags.valid is not None and flags.valid.tolist() == [i % 3 != 1 for i in range(90)]
    assert empty.values is None and not empty.has_values()


def test_a_body_cut_inside_a_document_is_truncated() -> None:
    data = body(random.Random(3), arrays=False, documents=2)
    with pytest.raises(Truncated):
        list(msgpack_column_documents(iter([data[:-5]])))
    with pytest.raises(Truncated):
        list(msgpack_column_documents(iter([b"\xc1" + data])))


def test_series_columns_give_the_rows_and_drop_empty_columns() -> None:
    times = np.array([T0_NS, T0_NS + 1], dtype=np.int64)
    batch = SeriesColumns(
        "m",
        (),
        ("a", "b", "c"),
        times,
        [
            ValueColumn(np.array([1.5, 2.0])),
            ValueColumn(None),
            ValueColumn(np.array([3, 4], dtype=np.int64), np.array([False, True])),
        ],
    )
    assert batch.batch().rows == [[T0_NS, 1.5, None, None], [T0_NS + 1, 2.0, None, 4]]
    kept = batch.with_values()
    assert kept.columns == ("a", "c")
    assert kept.rows(1, None) == [[T0_NS + 1, 2.0, 4]]
    floats = kept.values[1].as_floats()
    assert floats.values is not None and floats.values.dtype == np.float64
