"""The `/query` response formats, decoded chunk by chunk: msgpack, JSON and CSV.

msgpack and JSON give documents (`{"results": [...]}`) that carry errors and `partial` flags;
CSV gives rows without types or errors, turned into batches here with the types the server
listed (`SHOW FIELD KEYS`). Nothing here knows about HTTP or retries.
"""

from __future__ import annotations

import codecs
import csv
import json
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from data_platform.lib.influx.reader.influxql import parse_tag_set
from data_platform.lib.influx.reader.model import (
    FieldValue,
    SeriesBatch,
    SeriesFields,
    Tags,
    ValueColumn,
    normalize_tags,
)
from data_platform.lib.influx.reader.settings import WireFormat

ACCEPT: dict[WireFormat, str] = {
    "msgpack": "application/x-msgpack",
    "json": "application/json",
    "csv": "application/csv",
}
CONTENT_TYPES: dict[str, WireFormat] = {
    "application/x-msgpack": "msgpack",
    "application/json": "json",
    "application/csv": "csv",
    "text/csv": "csv",
}


class Truncated(Exception):
    """The body stopped in the middle of a document."""


class CsvServerError(Exception):
    """The CSV body reports an error (InfluxDB 3 does; 1.x/2.x drop them)."""


class UnexpectedShape(Exception):
    """The body is well-formed but not what a `/query` answer looks like."""


def _msgpack_ext(code: int, data: bytes) -> object:
    # tinylib/msgp (used by InfluxDB) encodes time.Time as ext 5: int64 seconds, int32 nanos.
    if code == 5 and len(data) == 12:
        seconds, nanos = struct.unpack(">qi", data)
        return seconds * 1_000_000_000 + nanos
    return msgpack.ExtType(code, data)


def msgpack_documents(chunks: Iterator[bytes]) -> Iterator[Any]:
    # timestamp=2 turns the standard msgpack timestamp (ext -1) into epoch nanoseconds.
    unpacker = msgpack.Unpacker(
        raw=False,
        timestamp=2,
        ext_hook=_msgpack_ext,
        strict_map_key=False,
        max_buffer_size=1 << 30,
    )
    fed = 0
    for data in chunks:
        unpacker.feed(data)
        fed += len(data)
        try:
            yield from unpacker
        except ValueError as exc:  # msgpack's format errors derive from ValueError
            raise Truncated(f"malformed msgpack ({exc})") from exc
    if unpacker.tell() != fed:
        raise Truncated(f"{fed - unpacker.tell()} bytes of an unfinished msgpack document")


@dataclass(frozen=True, slots=True)
class ValueColumns:
    """A series' `values` (rows `[time, v1, v2, ...]`) decoded straight into columns."""

    times: np.ndarray
    cells: list[ValueColumn]

    def __len__(self) -> int:
        return len(self.times)

    def rows(self) -> list[list[FieldValue]]:
        """The rows as msgpack decodes them."""
        count = len(self.times)
        columns = [self.times.tolist(), *(cell.tolist(count) for cell in self.cells)]
        return list(map(list, zip(*columns, strict=True)))


MIN_COLUMN_ROWS = 64
"""Rows below this are decoded as rows: numpy's overhead is more than it saves."""

_UNPACK_OPTIONS: dict[str, Any] = {
    "raw": False,
    "timestamp": 2,
    "ext_hook": _msgpack_ext,
    "strict_map_key": False,
    "max_buffer_size": 1 << 30,
}


def msgpack_column_documents(chunks: Iterator[bytes]) -> Iterator[Any]:
    """`msgpack_documents`, with every array of at least `MIN_COLUMN_ROWS` rows that come in a
    few runs of one byte layout each (e.g. int64 time and float64 values in every row) decoded
    as `ValueColumns` (see `_rows_as_columns`).

    Each document's bounds are found first (msgpack's `skip`, which builds no objects); the
    document is then walked: maps and arrays of the skeleton in Python, arrays of rows by numpy
    over their bytes. What the layout check cannot prove is decoded by msgpack as before.
    """
    scanner = msgpack.Unpacker(max_buffer_size=1 << 30)
    pending = bytearray()
    start = fed = 0  # where the unfinished document starts (`pending[0]`), what came in
    for data in chunks:
        scanner.feed(data)
        pending += data
        fed += len(data)
        while True:
            try:
                scanner.skip()  # resumes where the last call ran out of data
            except msgpack.OutOfData:
                break
            except ValueError as exc:  # msgpack's format errors derive from ValueError
                raise Truncated(f"malformed msgpack ({exc})") from exc
            end = scanner.tell()
            yield _column_document(bytes(pending[: end - start]))
            del pending[: end - start]
            start = end
    if scanner.tell() != fed:
        raise Truncated(f"{fed - scanner.tell()} bytes of an unfinished msgpack document")


def _column_document(document: bytes) -> Any:
    unpacker = msgpack.Unpacker(**_UNPACK_OPTIONS)
    unpacker.feed(document)
    try:
        return _ColumnWalk(document, unpacker).value()
    except (ValueError, TypeError, IndexError, RecursionError):
        # Whatever the walk cannot follow, msgpack decodes (or reports) as it always has.
        try:
            return msgpack.unpackb(document, **_UNPACK_OPTIONS)
        except ValueError as exc:
            raise Truncated(f"malformed msgpack ({exc})") from exc


# msgpack markers of the scalars a row layout may hold: (width, numpy type of the payload).
_FIXED_CELLS: dict[int, tuple[int, str]] = {
    0xCC: (2, "u1"),
    0xCD: (3, ">u2"),
    0xCE: (5, ">u4"),
    0xCF: (9, ">u8"),
    0xD0: (2, "i1"),
    0xD1: (3, ">i2"),
    0xD2: (5, ">i4"),
    0xD3: (9, ">i8"),
    0xCA: (5, ">f4"),
    0xCB: (9, ">f8"),
}
_LENGTH_SIZES = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
"""str 8/16/32 and bin 8/16/32: the bytes of their length."""
_NIL, _FALSE, _TRUE = 0xC0, 0xC2, 0xC3
_INT64_MAX = np.iinfo(np.int64).max


def _is_int_marker(marker: int) -> bool:
    return marker < 0x80 or marker >= 0xE0 or 0xCC <= marker <= 0xD3


def _array_header(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, offset of the first element) of the array at `pos`, None if it is none."""
    marker = data[pos]
    if 0x90 <= marker <= 0x9F:
        return marker & 0x0F, pos + 1
    if marker == 0xDC:
        return int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
    if marker == 0xDD:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    return None


def _scalar_width(data: bytes, pos: int) -> int | None:
    """The encoded width of the scalar at `pos` (text and bytes included), None for an array,
    a map or an extension."""
    marker = data[pos]
    if marker < 0x80 or marker >= 0xE0 or marker in (_NIL, _FALSE, _TRUE):
        return 1
    if marker in _FIXED_CELLS:
        return _FIXED_CELLS[marker][0]
    if 0xA0 <= marker <= 0xBF:
        return 1 + (marker & 0x1F)
    size = _LENGTH_SIZES.get(marker)
    if size is None:
        return None
    return 1 + size + int.from_bytes(data[pos + 1 : pos + 1 + size], "big")


class _ColumnWalk:
    """One document decoded from its bytes, arrays of rows into columns where they can be."""

    def __init__(self, document: bytes, unpacker: msgpack.Unpacker) -> None:
        self.document = document
        self.unpacker = unpacker

    def value(self) -> Any:
        data, unpacker = self.document, self.unpacker
        pos = unpacker.tell()
        marker = data[pos]
        if 0x80 <= marker <= 0x8F or marker in (0xDE, 0xDF):
            entries = unpacker.read_map_header()
            mapping: dict[Any, Any] = {}
            for _ in range(entries):
                key = unpacker.unpack()
                mapping[key] = self.value()
            return mapping
        header = _array_header(data, pos)
        if header is None:
            return unpacker.unpack()
        rows = _row_cells(data, *header)
        if rows is None:  # not rows: the skeleton (results, series, columns), walked
            length = unpacker.read_array_header()
            return [self.value() for _ in range(length)]
        if header[0] >= MIN_COLUMN_ROWS:
            decoded = _rows_as_columns(data, *header, rows)
            if decoded is not None:
                columns, end = decoded
                unpacker.read_bytes(end - pos)
                return columns
        return unpacker.unpack()


def _row_cells(data: bytes, length: int, first: int) -> list[tuple[int, int]] | None:
    """The (offset, width) of the cells of the first row of an array that looks like rows (its
    first element an array of scalars, the first an integer), None for any other array."""
    if length == 0:
        return None
    cells = _cells_at(data, first)
    if cells is None or not _is_int_marker(data[first + cells[0][0]]):
        return None
    return cells


def _cells_at(data: bytes, start: int) -> list[tuple[int, int]] | None:
    """The (offset from `start`, width) of the cells of the array of scalars at `start`."""
    header = _array_header(data, start)
    if header is None or header[0] == 0:
        return None
    count, pos = header
    found = []
    for _ in range(count):
        width = _scalar_width(data, pos)
        if width is None:
            return None
        found.append((pos - start, width))
        pos += width
    return found


MAX_LAYOUTS = 16
"""Runs of rows of one layout an array may have and still be decoded as columns."""


def _rows_as_columns(
    data: bytes, length: int, first: int, cells: list[tuple[int, int]]
) -> tuple[ValueColumns, int] | None:
    """The rows starting at `first` as columns, and the offset after them; None unless they
    come in at most `MAX_LAYOUTS` runs of one byte layout each (an integer field that grows
    from int8 to int16 changes the layout once), of one type per column.

    The proof, per run: its first row's cells are parsed; a row of the same header whose every
    marker says the same width as the first row's (one marker, or a class of one-byte markers)
    ends where the first one's does, so by induction row `i` of the run starts at
    `start + i * stride`; the run ends before the first row that differs.
    """
    runs: list[tuple[list[ValueColumn], int]] = []
    pos, left = first, length
    while left:
        if runs:
            if len(runs) == MAX_LAYOUTS or pos >= len(data):
                return None
            found = _cells_at(data, pos)
            if found is None or len(found) != len(cells):
                return None
            cells = found
        run = _layout_run(data, pos, left, cells)
        if run is None:
            return None
        columns, count, pos = run
        runs.append((columns, count))
        left -= count
    joined = runs[0][0] if len(runs) == 1 else _joined(runs)
    if joined is None:
        return None
    times = joined[0]
    if times.valid is not None or times.values is None or times.values.dtype != np.int64:
        return None
    return ValueColumns(times.values, joined[1:]), pos


def _layout_run(
    data: bytes, start: int, left: int, cells: list[tuple[int, int]]
) -> tuple[list[ValueColumn], int, int] | None:
    """The leading rows (of `left`) at `start` that have the layout `cells`, as columns: the
    columns, how many rows, and the offset after them."""
    head = cells[0][0]
    stride = cells[-1][0] + cells[-1][1]
    fits = min(left, (len(data) - start) // stride)
    if fits <= 0:
        return None
    names, formats, offsets = ["head"], [f"V{head}"], [0]
    kinds: list[int] = []
    for index, (offset, width) in enumerate(cells):
        marker = data[start + offset]
        if width == 1:
            names.append(f"m{index}")
            formats.append("u1")
            offsets.append(offset)
            kinds.append(-1)
            continue
        if marker not in _FIXED_CELLS:
            return None  # text or bytes: their width varies from row to row
        names += [f"m{index}", f"v{index}"]
        formats += ["u1", _FIXED_CELLS[marker][1]]
        offsets += [offset, offset + 1]
        kinds.append(marker)
    layout = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": stride})
    rows = np.frombuffer(data, dtype=layout, count=fits, offset=start)
    same = rows["head"] == rows["head"][0]
    for index, kind in enumerate(kinds):
        markers = rows[f"m{index}"]
        if kind == -1:
            fixint = (markers < 0x80) | (markers >= 0xE0)
            same &= fixint | (markers == _NIL) | (markers == _FALSE) | (markers == _TRUE)
        else:
            same &= markers == kind
    count = fits if same.all() else int(np.argmin(same))
    if count == 0:
        return None
    rows = rows[:count]
    columns: list[ValueColumn] = []
    for index, kind in enumerate(kinds):
        column = (
            _one_byte_column(rows[f"m{index}"]) if kind == -1 else _wide_column(rows[f"v{index}"])
        )
        if column is None:
            return None
        columns.append(column)
    return columns, count, start + count * stride


def _joined(runs: list[tuple[list[ValueColumn], int]]) -> list[ValueColumn] | None:
    """The runs' columns end to end; None where a column holds two types (int and float, or
    booleans and numbers): rows keep each value's own."""
    joined = []
    for index in range(len(runs[0][0])):
        parts = [(columns[index], count) for columns, count in runs]
        types = {p.values.dtype for p, _ in parts if p.values is not None}
        if len(types) > 1:
            return None
        if not types:
            joined.append(ValueColumn(None))
            continue
        dtype = types.pop()
        values: Any = np.concatenate(
            [p.values if p.values is not None else np.zeros(n, dtype) for p, n in parts]
        )
        if all(p.values is not None and p.valid is None for p, _ in parts):
            joined.append(ValueColumn(values))
            continue
        valid = np.concatenate(
            [p.valid if p.valid is not None else np.full(n, p.values is not None) for p, n in parts]
        )
        joined.append(ValueColumn(values, valid))
    return joined


def _one_byte_column(markers: np.ndarray) -> ValueColumn | None:
    """A column of one-byte cells: fixints, or booleans, either with nils."""
    nil = markers == _NIL
    boolean = (markers == _FALSE) | (markers == _TRUE)
    integer = (markers < 0x80) | (markers >= 0xE0)
    if not (nil | boolean | integer).all():
        return None
    has_bool, has_int = bool(boolean.any()), bool(integer.any())
    if has_bool and has_int:
        return None  # a field of two types: rows keep each value's own
    valid = ~nil if nil.any() else None
    if has_int:
        return ValueColumn(markers.view(np.int8).astype(np.int64), valid)
    if has_bool:
        return ValueColumn(markers == _TRUE, valid)
    return ValueColumn(None)


def _wide_column(payload: np.ndarray) -> ValueColumn | None:
    if payload.dtype.kind == "f":
        return ValueColumn(payload.astype(np.float64))
    if payload.dtype == np.dtype(">u8") and len(payload) and payload.max() > _INT64_MAX:
        return None  # beyond int64: rows keep the Python int
    return ValueColumn(payload.astype(np.int64))


def _byte_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = bytearray()
    for data in chunks:
        if b"\n" not in data:
            pending += data
            continue
        lines = data.split(b"\n")
        pending += lines[0]
        yield bytes(pending)
        yield from lines[1:-1]
        pending = bytearray(lines[-1])
    if pending.strip():
        yield bytes(pending)


_JSON = json.JSONDecoder()


def json_documents(chunks: Iterator[bytes]) -> Iterator[Any]:
    """Documents one a line (1.x, 2.x) or back to back without a separator (3.x), decoded as
    they complete: memory holds one document, not the body."""
    pending = bytearray()
    for data in chunks:
        pending += data
        if b"\n" in data:
            *lines, rest = pending.split(b"\n")
            for line in lines:
                yield from _documents_of(bytes(line))
            pending = bytearray(rest)
        elif pending.rstrip().endswith(b"}"):
            # Possibly one or more whole documents (3.x ends each chunk with one).
            documents, consumed = _leading_documents(bytes(pending))
            yield from documents
            del pending[:consumed]
    yield from _documents_of(bytes(pending))


def _documents_of(line: bytes) -> Iterator[Any]:
    if not line.strip():
        return
    try:
        yield json.loads(line)
        return
    except json.JSONDecodeError as exc:
        error = exc
    documents, consumed = _leading_documents(line)
    yield from documents
    if line[consumed:].strip():
        raise Truncated(f"an unfinished or malformed JSON document ({error})")


def _leading_documents(data: bytes) -> tuple[list[Any], int]:
    """The whole documents at the start of `data`, and the byte offset where the last ends."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], 0
    documents: list[Any] = []
    position = consumed = 0
    end = len(text)
    while position < end:
        while position < end and text[position].isspace():
            position += 1
        if position == end:
            break
        try:
            document, position = _JSON.raw_decode(text, position)
        except json.JSONDecodeError:
            break
        documents.append(document)
        consumed = position
    if len(text) != len(data):
        consumed = len(text[:consumed].encode("utf-8"))
    return documents, consumed


def documents_from_arrays(documents: Iterator[Any]) -> Iterator[Any]:
    """InfluxDB 3.7+'s msgpack (structs encoded as arrays, empty members left out) as the
    maps 1.x writes: `[[[id, [series...], partial?, error?]...]]` and each series
    `[name?, tags?, columns?, values?, partial?]`."""
    for document in documents:
        if not isinstance(document, list):
            yield document
            continue
        results = document[0] if document else []
        yield {"results": [_statement(item) for item in results]}


def _statement(item: Any) -> dict[str, Any]:
    if not isinstance(item, list) or not item or type(item[0]) is not int:
        raise UnexpectedShape(f"a msgpack statement result that is not an array: {item!r:.200}")
    result: dict[str, Any] = {"statement_id": item[0]}
    for member in item[1:]:
        if isinstance(member, list):
            result["series"] = [_series(s) for s in member]
        elif isinstance(member, bool):
            result["partial"] = member
        elif isinstance(member, str):
            result["error"] = member
    return result


def _series(item: Any) -> dict[str, Any]:
    if not isinstance(item, list):
        raise UnexpectedShape(f"a msgpack series that is not an array: {item!r:.200}")
    series: dict[str, Any] = {}
    for member in item:
        if isinstance(member, str):
            series["name"] = member
        elif isinstance(member, dict):
            series["tags"] = member
        elif isinstance(member, bool):
            series["partial"] = member
        elif (
            isinstance(member, list)
            and "columns" not in series
            and all(isinstance(c, str) for c in member)
        ):
            series["columns"] = member
        elif isinstance(member, (list, ValueColumns)):
            series["values"] = member
    return series


def text_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Lines with their `\\n` (csv.reader needs them to join quoted multi-line fields)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for data in chunks:
        text = decoder.decode(data)
        if "\n" not in text:
            pending += text
            continue
        lines = text.split("\n")
        lines[0] = pending + lines[0]
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


_BOOLEANS = {"true": True, "false": False}


def _parse_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text]
    except KeyError:
        raise ValueError(text) from None


def _parse_any(text: str) -> FieldValue:
    for parse in (int, float, _parse_bool):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


_CSV_PARSERS: dict[str, Callable[[str], FieldValue]] = {
    "float": float,
    "integer": int,
    "unsigned": int,
    "boolean": _parse_bool,
    "string": str,
}
# Order in which to try the types of a field that has several (one per shard); string last as
# it accepts anything.
_TYPE_TRIAL_ORDER = ("float", "integer", "unsigned", "boolean", "string")


def _csv_parser(types: frozenset[str] | None) -> Callable[[str], FieldValue]:
    if not types:
        return _parse_any
    if len(types) == 1:
        return _CSV_PARSERS.get(next(iter(types)), _parse_any)
    parsers = [_CSV_PARSERS[t] for t in _TYPE_TRIAL_ORDER if t in types]

    def parse(text: str) -> FieldValue:
        for parser in parsers:
            try:
                return parser(text)
            except ValueError:
                continue
        return text

    return parse


@dataclass
class CsvTally:
    """Values per field seen in a CSV stream; `blank` cells are null or an empty string."""

    present: dict[str, int]
    blank: dict[str, int]


def csv_batches(
    lines: Iterator[str],
    chunk_size: int,
    types: Mapping[str, frozenset[str]],
    tally: CsvTally,
) -> Iterator[SeriesBatch]:
    """Batches from CSV, cut where InfluxDB cuts chunks: at a new series or `chunk_size`."""
    reader = csv.reader(lines)
    header_open = False
    columns: tuple[str, ...] = ()
    parsers: list[Callable[[str], FieldValue]] = []
    blanks: list[int] = []
    rows_under_header = 0
    batch: SeriesBatch | None = None
    batch_tags_text = ""
    tags_cache: dict[str, Tags] = {}

    def close_header() -> None:
        for name, blank in zip(columns, blanks, strict=True):
            tally.present[name] = tally.present.get(name, 0) + rows_under_header - blank
            tally.blank[name] = tally.blank.get(name, 0) + blank

    for row in reader:
        if not row:
            # A blank line separates statements (1.x) or chunks (3.x); a header follows.
            if header_open:
                close_header()
            header_open = False
            continue
        if not header_open:
            if row == ["error"]:
                message = next(reader, ["unknown error"])
                raise CsvServerError(",".join(message))
            if row[:3] != ["name", "tags", "time"]:
                raise UnexpectedShape(f"unexpected CSV header {row[:5]!r}")
            if tuple(row[3:]) != columns:
                columns = tuple(row[3:])
                parsers = csv_parsers(columns, types)
            blanks = [0] * len(columns)
            rows_under_header = 0
            header_open = True
            continue
        if len(row) != len(columns) + 3:
            raise Truncated(f"a CSV row with {len(row)} cells under {len(columns) + 3} columns")
        name, tags_text = row[0], row[1]
        if (
            batch is None
            or len(batch.rows) >= chunk_size
            or tags_text != batch_tags_text
            or name != batch.measurement
            or columns != batch.columns
        ):
            if batch is not None and batch.rows:
                yield batch
            tags = tags_cache.get(tags_text)
            if tags is None:
                tags = tags_cache[tags_text] = normalize_tags(parse_tag_set(tags_text))
            batch = SeriesBatch(measurement=name, tags=tags, columns=columns, rows=[])
            batch_tags_text = tags_text
        try:
            values: list[FieldValue] = [int(row[2])]
        except ValueError:
            raise Truncated(f"a CSV row without an epoch time: {row[:3]!r}") from None
        for index, cell in enumerate(row[3:]):
            if cell:
                try:
                    values.append(parsers[index](cell))
                except ValueError:  # the type changed since SHOW FIELD KEYS
                    values.append(_parse_any(cell))
            else:
                values.append(None)
                blanks[index] += 1
        rows_under_header += 1
        batch.rows.append(values)
    if header_open:
        close_header()
    if batch is not None and batch.rows:
        yield batch


def column(series: list[dict[str, Any]], name: str) -> Iterator[Any]:
    for piece in series:
        columns: list[str] = list(piece.get("columns") or ())
        if name not in columns:
            continue
        index = columns.index(name)
        for row in piece.get("values") or ():
            yield row[index]


def field_counts(series: list[dict[str, Any]]) -> dict[str, int]:
    """Field -> count from the one row of `SELECT count(*)` (columns `count_<field>`)."""
    counts: dict[str, int] = {}
    for piece in series:
        columns: list[str] = list(piece.get("columns") or ())
        for row in piece.get("values") or ():
            for name, value in zip(columns, row, strict=False):
                if name.startswith("count_") and value:
                    field = name.removeprefix("count_")
                    counts[field] = counts.get(field, 0) + int(value)  # one column per type
    return counts


def signals_of_last_rows(
    series: list[dict[str, Any]], wanted: Sequence[str] | None
) -> list[SeriesFields]:
    """Series -> the fields with a value, from `SELECT last(*) ... GROUP BY *` (columns
    `last_<field>`, null where the series has no value of the field)."""
    found = []
    for piece in series:
        columns: list[str] = list(piece.get("columns") or ())
        present: set[str] = set()
        for row in piece.get("values") or ():
            present.update(
                name.removeprefix("last_")
                for name, value in zip(columns, row, strict=False)
                if name.startswith("last_") and value is not None
            )
        fields = tuple(sorted(f for f in present if wanted is None or f in wanted))
        if fields:
            found.append(SeriesFields(normalize_tags(piece.get("tags")), fields))
    return sorted(found)


def merged(batch: SeriesBatch) -> SeriesBatch:
    """The batch with columns of one name (a field read once per type) folded into one."""
    columns = batch.columns
    unique = tuple(dict.fromkeys(columns))
    if len(unique) == len(columns):
        return batch
    positions = [[i + 1 for i, c in enumerate(columns) if c == name] for name in unique]
    rows: list[list[FieldValue]] = []
    for row in batch.rows:
        merged: list[FieldValue] = [row[0]]
        for places in positions:
            merged.append(next((row[i] for i in places if row[i] is not None), None))
        rows.append(merged)
    return SeriesBatch(batch.measurement, batch.tags, unique, rows)


def csv_parsers(
    columns: Sequence[str], types: Mapping[str, frozenset[str]]
) -> list[Callable[[str], FieldValue]]:
    """A parser per CSV column; the columns of a field read once per type come in the sorted
    order of its types (see `select_window`), each parsed as its own type."""
    seen: dict[str, int] = {}
    parsers = []
    for name in columns:
        found = types.get(name)
        occurrence = seen[name] = seen.get(name, -1) + 1
        if found and len(found) > 1 and columns.count(name) == len(found):
            parsers.append(_CSV_PARSERS.get(sorted(found)[occurrence], _parse_any))
        else:
            parsers.append(_csv_parser(found))
    return parsers


def error_message(body: bytes) -> str:
    """The error text of a non-200 body: msgpack, JSON (`error`, or 2.x `message`), CSV, text."""
    document: object = None
    if body[:1] == b"\x81":
        try:
            document = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException):
            document = None
    text = body.decode("utf-8", "replace").strip()
    if document is None and text:
        try:
            document = json.loads(text.splitlines()[0])
        except ValueError:
            document = None
    if isinstance(document, dict):
        for key in ("error", "message"):
            if document.get(key):
                return str(document[key])
        for result in document.get("results") or ():
            if isinstance(result, dict) and result.get("error"):
                return str(result["error"])
    lines = text.splitlines()
    if len(lines) > 1 and lines[0] == "error":
        return lines[1].strip('"')
    return text[:500]
