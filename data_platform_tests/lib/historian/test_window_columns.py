"""A window written from batches decoded into columns against the same batches as rows."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import msgpack
import psycopg
import pytest
from psycopg import sql

from data_platform.lib.historian.copy import ValueCopy
from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.registry import FieldTypes, SignalRegistry
from data_platform.lib.historian.signals import RegisteredSignal, Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import WindowWrite, _WindowStream, replace_window
from data_platform.lib.influx.reader.model import FieldValue, SeriesBatch, SeriesColumns
from data_platform.lib.influx.reader.wire import ValueColumns, msgpack_column_documents
from data_platform.lib.timing.window import Window

T0_NS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
WINDOW = Window(datetime(2023, 12, 31, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
COLUMNS = ("f", "i", "b", "gap", "empty")


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, buffer: bytes | bytearray) -> None:
        self.data += buffer


class KnownRegistry(SignalRegistry):
    """Every signal registered already, under ids in order of appearance (no database)."""

    def __init__(self) -> None:
        super().__init__("src", HistorianTables("raw"), Signal.default_name)
        self.ids: dict[Signal, int] = {}

    def ensure(
        self, conn: psycopg.Connection, signals: Iterable[Signal], types: FieldTypes | None = None
    ) -> list[RegisteredSignal]:
        return [
            RegisteredSignal(self.ids.setdefault(s, len(self.ids) + 1), s.field, s) for s in signals
        ]


def cell(kind: str, value: Any) -> bytes:
    if kind == "time":
        return b"\xd3" + struct.pack(">q", value)
    if kind == "f":
        return b"\xcb" + struct.pack(">d", value)
    return cast(bytes, msgpack.packb(value))


def decoded(rows: Sequence[Sequence[FieldValue]]) -> ValueColumns:
    """The rows as InfluxDB's msgpack, decoded into columns."""
    kinds = ["time", "f", "", "", "", ""]
    body = cast(bytes, msgpack.packb({"values": [0]}))[
        :-2
    ]  # `{"values": ` then the rows' own bytes
    body += b"\xdd" + struct.pack(">I", len(rows))
    for row in rows:
        body += b"\x96" + b"".join(cell(k, v) for k, v in zip(kinds, row, strict=True))
    values = next(msgpack_column_documents(iter([body])))["values"]
    assert isinstance(values, ValueColumns), "these rows have one layout: they decode as columns"
    return values


def plant(seed: int, count: int, *, step_ns: int = 1_000_003) -> list[list[FieldValue]]:
    """Rows of one series: floats (NaN, -0.0), fixints with nils, booleans, a field with
    values in some rows only, one without any; timestamps with nanosecond remainders."""
    rng = random.Random(seed)
    return [
        [
            T0_NS + i * step_ns,
            rng.choice([rng.uniform(-1e9, 1e9), float("nan"), -0.0]),
            rng.choice([rng.randrange(-32, 128), None]),
            rng.random() < 0.5,
            None if i % 5 else 7,
            None,
        ]
        for i in range(count)
    ]


def as_columns(rows: list[list[FieldValue]], tags: tuple[tuple[str, str], ...]) -> SeriesColumns:
    values = decoded(rows)
    return SeriesColumns("m", tags, COLUMNS, values.times, values.cells)


def as_rows(rows: list[list[FieldValue]], tags: tuple[tuple[str, str], ...]) -> SeriesBatch:
    return SeriesBatch("m", tags, COLUMNS, [list(r) for r in rows])


def copy(
    batches: Iterable[SeriesBatch | SeriesColumns], on_collision: str = "fail"
) -> tuple[bytes, WindowWrite]:
    sink = Sink()
    stream = _WindowStream(KnownRegistry(), WINDOW, cast(Any, None), on_collision)
    out = ValueCopy(cast(psycopg.Copy, sink))
    try:
        stream.copy_batches(out, batches)
    finally:
        out.close()
    return bytes(sink.data), stream.result


def same_result(a: WindowWrite, b: WindowWrite) -> None:
    assert (a.rows, a.deleted, a.signals, a.newest_ns, a.collisions, a.timings) == (
        b.rows,
        b.deleted,
        b.signals,
        b.newest_ns,
        b.collisions,
        b.timings,
    )
    assert repr(a.preview) == repr(b.preview)  # NaN compares unequal to itself


def chunks(rows: list[list[FieldValue]], size: int) -> list[list[list[FieldValue]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def test_columns_copy_the_bytes_the_rows_copy() -> None:
    north, south = (("site", "north"),), (("site", "south"),)
    series = [(north, plant(1, 1000)), (south, plant(2, 640, step_ns=999_999_000))]
    row_batches = [as_rows(part, tags) for tags, rows in series for part in chunks(rows, 300)]
    column_batches = [
        as_columns(part, tags) if len(part) >= 64 else as_rows(part, tags)
        for tags, rows in series
        for part in chunks(rows, 300)
    ]
    assert sum(isinstance(b, SeriesColumns) for b in column_batches) == 6
    want, want_result = copy(row_batches)
    got, got_result = copy(column_batches)
    assert got == want
    same_result(got_result, want_result)
    assert b'{"ns": ' in want  # the remainders went into meta on both paths
    assert got_result.rows == sum(
        v is not None for _, rows in series for row in rows for v in row[1:]
    )


def test_columns_that_clash_go_through_the_row_checks() -> None:
    rows = plant(3, 400, step_ns=1000)
    rows[250][0] = cast(int, rows[249][0]) + 1  # same microsecond as the row before
    rows[100][0] = cast(int, rows[99][0]) + 999  # a clash across the batch boundary below
    parts = [rows[:100], rows[100:]]
    for on_collision in ("keep_first", "fail"):
        outcomes = []
        for make in (as_rows, as_columns):
            batches = [make(p, ()) for p in parts]
            try:
                outcomes.append(copy(batches, on_collision))
            except HistorianWriteError as exc:
                outcomes.append(str(exc))
        if on_collision == "fail":
            assert outcomes[0] == outcomes[1] and "same microsecond" in str(outcomes[0])
            continue
        (want, want_result), (got, got_result) = outcomes
        assert got == want and got_result.collisions == want_result.collisions > 0
        same_result(got_result, want_result)


@pytest.mark.parametrize("where", ["out of order", "outside the window"])
def test_columns_the_checks_refuse_fail_as_rows_do(where: str) -> None:
    rows = plant(4, 200)
    if where == "out of order":
        rows[150][0] = cast(int, rows[10][0])
    else:
        rows[-1][0] = WINDOW.end_ns
    failures = []
    for make in (as_rows, as_columns):
        with pytest.raises(HistorianWriteError) as caught:
            copy([make(rows, ())])
        failures.append(str(caught.value))
    assert failures[0] == failures[1]


@pytest.mark.integration
def test_a_window_from_columns_stores_what_rows_store(warehouse_url: str) -> None:
    stored = []
    for schema, make in (("from_rows", as_rows), ("from_columns", as_columns)):
        tables = HistorianTables(schema=schema)
        registry = SignalRegistry("src", tables, Signal.default_name)
        with (
            psycopg.connect(warehouse_url) as conn,
            psycopg.connect(warehouse_url, autocommit=True) as reg_conn,
        ):
            ensure_tables(conn, tables)
            conn.commit()
            batches = [make(part, (("site", "a"),)) for part in chunks(plant(5, 900), 300)]
            result = replace_window(
                conn, registry, WINDOW, batches, delete_tag_ids=list, register_conn=reg_conn
            )
            conn.commit()
            query = sql.SQL(
                "SELECT t.field, h.ts, h.value::text, h.value_text, h.meta, h.qc "
                "FROM {} h JOIN {} t USING (tag_id) ORDER BY t.field, h.ts"
            ).format(tables.hist, tables.tags)
            table = conn.execute(query).fetchall()
        stored.append((result.rows, table))
    assert stored[0] == stored[1]
    assert stored[0][0] == len(stored[0][1]) > 900
