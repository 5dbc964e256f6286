"""The warehouse: one PostgreSQL (optionally TimescaleDB) database reached by a libpq URL."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import Field

_PoolKey = tuple[str, int, bool, float]
_POOLS: dict[_PoolKey, ConnectionPool[psycopg.Connection]] = {}
_SUSPECT: set[_PoolKey] = set()
"""Pools whose last use lost the server: the next caller asks the server before waiting."""
_POOLS_LOCK = threading.Lock()


def redact_url(url: str) -> str:
    """The URL with any password removed, for messages and logs."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable warehouse URL>"
    info.pop("password", None)
    host = info.get("host", "localhost")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class WarehouseResource(dg.ConfigurableResource):
    """A pooled psycopg connection to the warehouse (PostgreSQL or TimescaleDB)."""

    url: str = Field(
        description="libpq URL or DSN of the warehouse database, read at run time "
        "(set WAREHOUSE_URL).",
    )
    max_connections: int = Field(default=4, description="Pool size per run process.")
    prepared_statements: bool = Field(
        default=True,
        description="Let psycopg prepare repeated statements. Turn off behind poolers in "
        "transaction mode (PgBouncer) and for engines that share one session between clients "
        "(the platform's resource reads WAREHOUSE_PREPARED_STATEMENTS=off).",
    )
    connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How long one attempt to open a connection may take before the server "
        "counts as unreachable.",
    )
    pool_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a step waits for a free pooled connection while every one is in "
        "use. A server that is down is not waited for: it fails within the connect timeout.",
    )

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """The fields repr() and str() show: the URL without its password."""
        for name, value in super().__repr_args__():
            if name == "url" and isinstance(value, str) and not isinstance(value, dg.EnvVar):
                value = redact_url(value)
            yield name, value

    def _get_pool(self) -> ConnectionPool[psycopg.Connection]:
        """One pool per process and settings, shared by every asset of a run."""
        key = self._pool_key
        with _POOLS_LOCK:
            pool = _POOLS.get(key)
            suspect = key in _SUSPECT
        if pool is None or pool.closed or suspect:
            # A pool that cannot connect only logs why, and keeps its callers waiting for the
            # whole timeout: a wrong URL, a stopped server or one lost during the last use
            # fails here within the connect timeout, with PostgreSQL's reason.
            self._probe()
        with _POOLS_LOCK:
            _SUSPECT.discard(key)
            pool = _POOLS.get(key)
            if pool is None or pool.closed:
                kwargs: dict[str, Any] = {"connect_timeout": self._connect_timeout}
                if not self.prepared_statements:
                    kwargs["prepare_threshold"] = None
                pool = ConnectionPool(
                    self.url,
                    connection_class=psycopg.Connection,
                    min_size=0,
                    max_size=self.max_connections,
                    kwargs=kwargs,
                    open=True,
                    check=ConnectionPool.check_connection,
                    name="warehouse",
                )
                _POOLS[key] = pool
            return pool

    @property
    def _pool_key(self) -> _PoolKey:
        return (self.url, self.max_connections, self.prepared_statements, self._connect_timeout)

    @property
    def _connect_timeout(self) -> int:
        # libpq takes whole seconds and treats 1 as 2.
        return max(2, math.ceil(self.connect_timeout_seconds))

    def _checkout(self, pool: ConnectionPool[psycopg.Connection]) -> psycopg.Connection:
        """A pooled connection; a server that went away fails within the connect timeout.

        A pool whose server is down keeps its callers waiting for the whole pool timeout; so
        after a connect timeout's wait the server is asked directly before waiting on.
        """
        quick = min(self.connect_timeout_seconds, self.pool_timeout_seconds)
        try:
            return pool.getconn(timeout=quick)
        except PoolTimeout:
            if quick >= self.pool_timeout_seconds:
                raise
            self._probe()
            return pool.getconn(timeout=self.pool_timeout_seconds - quick)

    def _mark_suspect(self) -> None:
        with _POOLS_LOCK:
            _SUSPECT.add(self._pool_key)

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled connection; the transaction commits on success and rolls back on error."""
        try:
            pool = self._get_pool()
            conn = self._checkout(pool)
            try:
                with conn:  # commits on success, rolls back on error (a pooled one stays open)
                    conn.autocommit = autocommit
                    try:
                        yield conn
                    finally:
                        if autocommit and not conn.broken:
                            conn.autocommit = False
            finally:
                if conn.broken:
                    self._mark_suspect()
                pool.putconn(conn)
        except PoolTimeout as exc:
            self._mark_suspect()
            # Either every connection stayed busy, or the server went away: ask it directly.
            try:
                self._probe()
            except psycopg.OperationalError as probe:
                reason = _first_line(probe)
            else:
                reason = f"{_first_line(exc)} (all {self.max_connections} connections busy)"
            raise WarehouseUnavailable(
                f"warehouse {redact_url(self.url)} is unreachable: {reason}. "
                "Check WAREHOUSE_URL and that the server is running."
            ) from exc
        except psycopg.OperationalError as exc:
            self._mark_suspect()
            raise WarehouseUnavailable(
                f"warehouse {redact_url(self.url)} is unreachable: {_first_line(exc)}. "
                "Check WAREHOUSE_URL and that the server is running."
            ) from exc

    def _probe(self) -> None:
        """Connect once, outside the pool; raises psycopg.OperationalError with the reason."""
        psycopg.connect(self.url, connect_timeout=self._connect_timeout).close()

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """A dedicated (unpooled) connection, for statements that need their own session."""
        kwargs: dict[str, Any] = {
            "autocommit": autocommit,
            "connect_timeout": self._connect_timeout,
        }
        if not self.prepared_statements:
            kwargs["prepare_threshold"] = None
        return psycopg.connect(self.url, **kwargs)


class WarehouseUnavailable(Exception):
    """The warehouse could not be reached (transient: a retry may succeed)."""


def close_pools() -> None:
    """Close every pool this process opened (tests, and processes that outlive their runs)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
        _SUSPECT.clear()
    for pool in pools:
        pool.close()


def has_timescaledb(conn: psycopg.Connection) -> str | None:
    """The installed TimescaleDB extension version, or None on plain PostgreSQL."""
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return row[0] if row else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
