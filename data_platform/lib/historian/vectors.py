"""A batch's timestamps checked and its numeric columns encoded as binary COPY rows, with numpy.

Each value row of a number is 48 bytes (`ROW`), plus its jsonb `meta` when the timestamp has
nanoseconds beyond the microsecond. A column becomes one structured array filled field by field
and sent as one buffer, instead of a `struct.pack` per value. The bytes are exactly those of the
per-value encoder in `copy.py` (tested); columns holding text fall back to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from data_platform.lib.historian.copy import NS_META, PG_EPOCH_US, ValueCopy
from data_platform.lib.influx.reader.model import FieldValue, ValueColumn

ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("tag_len", ">i4"),
        ("tag_id", ">i4"),
        ("value_len", ">i4"),
        ("value", ">f8"),
        ("text_len", ">i4"),
        ("qc_len", ">i4"),
        ("qc", ">i2"),
        ("meta_len", ">i4"),
    ]
)
"""One number row: (ts, tag_id, value, value_text NULL, qc 0, meta length or NULL)."""
_TEMPLATE = np.array([(6, 8, 0, 4, 0, 8, 0.0, -1, 2, 0, -1)], dtype=ROW)
_META_WIDTH = max(len(NS_META % r) for r in range(1, 1000))
_METAS = np.zeros((1000, _META_WIDTH), dtype=np.uint8)
for _rest in range(1, 1000):
    _meta = NS_META % _rest
    _METAS[_rest, : len(_meta)] = np.frombuffer(_meta, dtype=np.uint8)
_META_LEN = np.array([0] + [len(NS_META % r) for r in range(1, 1000)], dtype=np.int32)
_NUMBER_KINDS = frozenset({float, int, bool})

MIN_ROWS = 64
"""Batches shorter than this are cheaper to encode value by value."""

Int64s = npt.NDArray[np.int64]


def nanoseconds(times: Sequence[FieldValue]) -> Int64s | None:
    """A batch's timestamps as int64 epoch nanoseconds, or None if one is not such a number."""
    if set(map(type, times)) != {int}:
        return None
    try:
        return np.array(times, dtype=np.int64)
    except OverflowError:
        return None


def number_column(values: Sequence[FieldValue]) -> tuple[npt.NDArray[np.float64], Int64s] | None:
    """A column of numbers as floats (booleans 0/1) and the indices of its values, or None
    when it holds anything but numbers and None (text is encoded value by value)."""
    kinds = set(map(type, values))
    has_none = type(None) in kinds
    if not kinds - {type(None)} <= _NUMBER_KINDS:
        return None
    numbers = np.array(values, dtype=np.float64)  # None becomes NaN
    if not has_none:
        return numbers, np.arange(len(numbers), dtype=np.int64)
    nan = np.flatnonzero(np.isnan(numbers))
    missing = [i for i in nan.tolist() if values[i] is None]
    keep = np.ones(len(numbers), dtype=bool)
    keep[missing] = False
    index = np.flatnonzero(keep)
    return numbers[index], index


def encode_numbers(
    tag_id: int, numbers: npt.NDArray[np.float64], us: Int64s, rest: Int64s
) -> bytes:
    """The binary COPY rows of one signal's values at microseconds `us` (rests in `meta`)."""
    rows = np.repeat(_TEMPLATE, len(numbers))
    rows["ts"] = us - PG_EPOCH_US
    rows["tag_id"] = tag_id
    rows["value"] = numbers
    if not rest.any():
        return rows.tobytes()
    meta_len = _META_LEN[rest]
    rows["meta_len"] = np.where(meta_len > 0, meta_len, -1)
    # Fixed-width rows with room for the longest meta, then the unused room cut out.
    wide = np.empty((len(rows), ROW.itemsize + _META_WIDTH), dtype=np.uint8)
    wide[:, : ROW.itemsize] = rows.view(np.uint8).reshape(len(rows), ROW.itemsize)
    wide[:, ROW.itemsize :] = _METAS[rest]
    used = np.arange(wide.shape[1]) < (ROW.itemsize + meta_len)[:, None]
    return wide[used].tobytes()


def write_batch(
    out: ValueCopy,
    tag_ids: Sequence[int],
    rows: Sequence[Sequence[FieldValue]],
    us: Int64s,
    rest: Int64s,
) -> int:
    """Append a checked batch, column `i + 1` as signal `tag_ids[i]`: numbers at once, text
    value by value (as `ValueCopy.write_columns` would); return the values written."""
    written = 0
    for i, tag_id in enumerate(tag_ids, start=1):
        values = [row[i] for row in rows]
        numbers = number_column(values)
        if numbers is None:
            stamps = (us - PG_EPOCH_US).tolist()
            metas = [NS_META % r if r else None for r in rest.tolist()]
            written += out.write_column(tag_id, values, stamps, metas)
            continue
        floats, index = numbers
        out.write_encoded(encode_numbers(tag_id, floats, us[index], rest[index]))
        written += len(floats)
    return written


def write_value_columns(
    out: ValueCopy,
    tag_ids: Sequence[int],
    columns: Sequence[ValueColumn],
    us: Int64s,
    rest: Int64s,
) -> int:
    """`write_batch` for a batch decoded into columns (numbers only): no value becomes a
    Python object on the way; return the values written."""
    written = 0
    for tag_id, column in zip(tag_ids, columns, strict=True):
        if column.values is None:
            continue
        numbers = column.values.astype(np.float64)
        if column.valid is None:
            out.write_encoded(encode_numbers(tag_id, numbers, us, rest))
            written += len(numbers)
            continue
        index = np.flatnonzero(column.valid)
        out.write_encoded(encode_numbers(tag_id, numbers[index], us[index], rest[index]))
        written += len(index)
    return written
