"""The platform's advisory locks: one key scheme, transaction locks and session locks.

Every key is `advisory_key(<family>, <what>...)`, a signed 64-bit hash of its parts computed
here (not by the server), so the historian, the rollup engines and any later family share one
key space without colliding. Writers that must exclude each other name the same parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psycopg

NAMESPACE = "data_platform"


def advisory_key(*parts: str | int) -> int:
    """The stable signed 64-bit advisory lock key of `parts`, e.g. `("rollup", "<view>")`."""
    text = json.dumps([NAMESPACE, *(str(p) for p in parts)], ensure_ascii=False)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def xact_lock(conn: psycopg.Connection, keys: Iterable[int]) -> None:
    """Take the keys' locks, in the order given, until the current transaction ends."""
    for key in keys:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@contextmanager
def session_locks(conn: psycopg.Connection, keys: Sequence[int]) -> Iterator[None]:
    """Hold the keys' session locks (taken in the order given) for the block.

    For statements that cannot run in a transaction block, or locks that must outlive another
    connection's transaction. If releasing fails, the connection is closed: ending the session
    is what frees the locks it still holds.
    """
    taken: list[int] = []
    try:
        for key in keys:
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            taken.append(key)
        yield
    finally:
        try:
            for key in reversed(taken):
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        except psycopg.Error:
            conn.close()
