"""The reader's errors: one type per failure family, each with a message a user can act on.

Errors cross process boundaries (Dagster's run workers, the multiprocess executor), so every
one pickles by the keyword arguments that rebuild it (`ReaderError.__reduce__`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from data_platform.lib.timing.window import Window


class ReaderError(Exception):
    """Base of the reader's errors; `rebuilt_from` names the attributes that rebuild one."""

    rebuilt_from: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        state = {name: getattr(self, name) for name in self.rebuilt_from}
        return (partial(type(self), **state), ())


# -- the server reader ----------------------------------------------------------------------------
class InfluxError(ReaderError):
    """Reading from InfluxDB failed. The message names the source, the window and a fix."""

    default_hint: ClassVar[str] = "Check the InfluxDB settings of this source"
    rebuilt_from = ("source", "what", "cause", "window", "hint", "status")

    def __init__(
        self,
        source: str,
        what: str,
        cause: str,
        window: Window | None = None,
        hint: str | None = None,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.what = what
        self.cause = cause.strip().rstrip(".")
        self.window = window
        self.hint = hint or self.default_hint
        self.status = status
        where = f" window {window}" if window is not None else ""
        super().__init__(f"source '{source}': {what}{where}: {self.cause}. {self.hint}")


class InfluxAuthError(InfluxError):
    """InfluxDB refused the credentials (HTTP 401/403)."""

    default_hint = (
        "Check INFLUX_USERNAME/INFLUX_PASSWORD or INFLUX_TOKEN, and that the user may read "
        "this database"
    )


class InfluxDatabaseNotFound(InfluxError):
    """The database (or, on InfluxDB 2.x, its DBRP mapping) does not exist."""

    default_hint = (
        "Create the database or fix `influx.database`; on InfluxDB 2.x map the bucket to this "
        "database name with a DBRP mapping (`influx v1 dbrp create`)"
    )


class InfluxQueryError(InfluxError):
    """InfluxDB rejected or aborted the query (bad query, timeout, limits)."""

    default_hint = "Check the measurement, field and tag names of this source"


class InfluxTransientError(InfluxError):
    """The server was unreachable, failed (5xx) or the stream broke: retrying may succeed."""

    default_hint = "Check that InfluxDB is up and reachable; the window can be retried"


class InfluxConfigError(InfluxError):
    """The settings cannot work (bad URL, missing CA file, conflicting credentials)."""


class InfluxSettingsError(InfluxConfigError, ValueError):
    """A setting is invalid on its own, before any source or server is involved.

    A ValueError too, so the YAML's validators can let it through as a load-time error; the
    message names the YAML setting and the fix.
    """

    rebuilt_from = ("setting", "problem")

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        self.source = ""
        self.what = setting
        self.cause = problem
        self.window = None
        self.hint = ""
        self.status = None
        Exception.__init__(self, f"{setting}: {problem}")


_DATABASE_NOT_FOUND = ("database not found", "no dbrp mapping", "db not found")
_AUTH_FAILURES = (
    "authorization failed",
    "unable to parse authentication",
    "not authorized",
    "unauthorized",
    "authentication failed",
)
_QUERY_HINTS = (
    (
        ("timeout", "timed out"),
        "Read smaller windows or raise the server's query timeout ([coordinator] query-timeout)",
    ),
    (
        ("max-select", "max-series", "max select", "limit exceeded"),
        "Read smaller windows, filter tags, or raise the server's max-select-* limits",
    ),
    (
        ("query interrupted",),
        "The server killed the query (KILL QUERY or a restart); retry the window",
    ),
    (
        ("retention policy not found",),
        "Create the retention policy or fix `influx.retention_policy`",
    ),
)


def classify(status: int | None, message: str) -> tuple[type[InfluxError], str | None]:
    """The error family of a server answer, and a hint more specific than the family's."""
    text = message.lower()
    if status in (401, 403) or any(marker in text for marker in _AUTH_FAILURES):
        return InfluxAuthError, None
    if any(marker in text for marker in _DATABASE_NOT_FOUND):
        return InfluxDatabaseNotFound, None
    if status is not None and (status >= 500 or status in (408, 429)):
        return InfluxTransientError, None
    if status == 404:
        return InfluxConfigError, "Check `influx.url`: it should point at the InfluxDB HTTP API"
    for markers, hint in _QUERY_HINTS:
        if any(marker in text for marker in markers):
            return InfluxQueryError, hint
    return InfluxQueryError, None


# -- the files reader -----------------------------------------------------------------------------
class LineProtocolError(ReaderError, ValueError):
    """A line that is not valid line protocol; names the file, line, column and the problem."""

    rebuilt_from = ("reason", "line", "column", "path", "line_no")

    def __init__(
        self,
        reason: str,
        *,
        line: str,
        column: int | None = None,
        path: str | None = None,
        line_no: int | None = None,
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.path = path
        self.line_no = line_no
        where = ", ".join(
            part
            for part in (
                path,
                f"line {line_no}" if line_no is not None else None,
                f"column {column}" if column is not None else None,
            )
            if part
        )
        snippet = line if len(line) <= 200 else line[:200] + "..."
        super().__init__(f"{where or 'line protocol'}: {reason}: {snippet!r}")
