"""Binary COPY rows of the value table, encoded here rather than through psycopg's row formatter.

This is the hot loop of an ingest: (ts int8, tag_id int4, value float8, value_text text,
qc int2, meta jsonb) per value, NULLs as length -1. PostgreSQL's binary timestamptz is int64
microseconds since 2000-01-01 UTC, the same bytes as an int8, so timestamps are written as
plain integers (no datetime per value).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Sequence
from queue import Queue

import psycopg
from psycopg import sql

from data_platform.lib.influx.reader.model import FieldValue

PG_EPOCH_US = 946_684_800_000_000
"""Unix microseconds of PostgreSQL's epoch: subtract to get a binary timestamptz."""
NS_META = b'\x01{"ns": %d}'
"""The jsonb `meta` of a value whose timestamp has nanoseconds beyond the microsecond."""

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
_TRAILER = b"\xff\xff"
_NUMBER_ROW = struct.Struct(">hiqiiidiihi").pack
_TEXT_HEAD = struct.Struct(">hiqiiii").pack
_TAIL_NO_META = struct.pack(">ihi", 2, 0, -1)
_FLUSH_BYTES = 1 << 20
SEND_AHEAD = 8
"""MiB buffers a window may encode ahead of what PostgreSQL has taken (0: send inline)."""
SEND_BUFFER_BYTES = 4 << 20
"""The COPY connection's socket send buffer asked for (the system caps it; 0: left as is)."""


def copy_statement(table: sql.Identifier) -> sql.Composed:
    """The binary COPY into the value table `table`."""
    return sql.SQL(
        "COPY {} (ts, tag_id, value, value_text, qc, meta) FROM STDIN (FORMAT BINARY)"
    ).format(table)


def widen_send_buffer(conn: psycopg.Connection) -> None:
    """Let the COPY's socket hold megabytes, so the server keeps inserting while this process
    is busy reading (the sending thread needs the GIL for every write, and the reader's
    decoding holds it for a chunk at a time)."""
    if not SEND_BUFFER_BYTES:
        return
    with socket.fromfd(conn.pgconn.socket, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < SEND_BUFFER_BYTES:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class ValueCopy:
    """Value rows streamed into an open binary COPY, flushed to the server by the MiB.

    `copy_s` accumulates the time spent handing bytes to the COPY: when the server inserts
    slower than the rows come, this is where a run waits for it.
    """

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy = copy
        self._buf = bytearray(_SIGNATURE)
        self.copy_s = 0.0
        self._sender: _Sender | None = _Sender(copy) if SEND_AHEAD else None

    def write_columns(
        self,
        tag_ids: Sequence[int],
        rows: Sequence[Sequence[FieldValue]],
        stamps: Sequence[int],
        metas: Sequence[bytes | None],
    ) -> int:
        """Append column `i + 1` of `rows` as signal `tag_ids[i]`; return the values written.

        One signal at a time, so the (tag_id, ts) index grows in order. `stamps` are the rows'
        binary timestamps, `metas` their jsonb payloads (or None).
        """
        any_meta = any(metas)
        written = 0
        for i, tag_id in enumerate(tag_ids):
            written += self.write_column(
                tag_id, [row[i + 1] for row in rows], stamps, metas, any_meta=any_meta
            )
        return written

    def write_column(
        self,
        tag_id: int,
        values: Sequence[FieldValue],
        stamps: Sequence[int],
        metas: Sequence[bytes | None],
        *,
        any_meta: bool = True,
    ) -> int:
        """Append one signal's values, value by value; return how many (None is skipped)."""
        buf = self._buf
        pack = _NUMBER_ROW
        written = 0
        for j, value in enumerate(values):
            if value is None:
                continue
            written += 1
            if value.__class__ is float and not any_meta:
                buf += pack(6, 8, stamps[j], 4, tag_id, 8, value, -1, 2, 0, -1)
            else:
                _encode_value(buf, stamps[j], tag_id, value, metas[j])
        if len(buf) > _FLUSH_BYTES:
            self._send()
        return written

    def write_encoded(self, rows: bytes) -> None:
        """Append rows already encoded (see `vectors.py`)."""
        self._buf += rows
        if len(self._buf) > _FLUSH_BYTES:
            self._send()

    def finish(self) -> None:
        """Send what is buffered and the COPY trailer; wait until the server has it all."""
        self._buf += _TRAILER
        self._send()
        if self._sender is not None:
            started = time.perf_counter()
            self._sender.close()
            self.copy_s += time.perf_counter() - started

    def close(self) -> None:
        """Stop the sending thread if a failure left it running (no-op after `finish`)."""
        if self._sender is not None:
            self._sender.close(raise_error=False)

    def _send(self) -> None:
        started = time.perf_counter()
        if self._sender is not None:
            self._sender.put(bytes(self._buf))
        else:
            self._copy.write(self._buf)
        self.copy_s += time.perf_counter() - started
        self._buf = bytearray()


class _Sender:
    """Hands encoded buffers to the COPY from a thread, at most `SEND_AHEAD` behind.

    libpq releases the GIL while it waits for the server to take data, so the next batch is
    read, checked and encoded meanwhile; the bound keeps memory flat when the server is slower.
    """

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy = copy
        self._queue: Queue[bytes | None] = Queue(maxsize=SEND_AHEAD)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="historian-copy", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        self._raise()
        self._queue.put(data)

    def close(self, *, raise_error: bool = True) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._copy.write(data)
                except BaseException as exc:
                    self._error = exc


def _encode_value(
    buf: bytearray, pg_ts: int, tag_id: int, value: FieldValue, meta: bytes | None
) -> None:
    """Append one value row; `meta` is the jsonb payload (version byte + JSON) or None."""
    kind = type(value)
    if kind is str:
        text = value.encode()  # type: ignore[union-attr]
        buf += _TEXT_HEAD(6, 8, pg_ts, 4, tag_id, -1, len(text))
        buf += text
    else:
        number = float(value) if kind is not bool else (1.0 if value else 0.0)  # type: ignore[arg-type]
        buf += _NUMBER_ROW(6, 8, pg_ts, 4, tag_id, 8, number, -1, 2, 0, -1)
        if meta is None:
            return
        del buf[-4:]  # the row's meta NULL, replaced below
        buf += struct.pack(">i", len(meta))
        buf += meta
        return
    if meta is None:
        buf += _TAIL_NO_META
    else:
        buf += struct.pack(">ihi", 2, 0, len(meta))
        buf += meta
