"""Read InfluxDB through the v1 `/query` API (InfluxQL), one window at a time, streamed.

InfluxDB 1.x serves this API natively, 2.x through DBRP mappings and 3.x through its
v1-compatible endpoint. Responses are read chunk by chunk (`chunked=true`) in msgpack, JSON or
CSV, so memory stays flat however large a window is.

What each format can and cannot say matters for correctness:
- msgpack and JSON carry per-statement errors and `partial` flags, so a query that the server
  kills half-way (query timeout) or a stream that stops early is detected from the body.
- InfluxDB 1.x/2.x drop per-statement errors from CSV: an unknown database or a timed-out query
  gives an empty or silently shortened 200 body. CSV also loses types. A CSV read therefore takes
  the field types from `SHOW FIELD KEYS` (which also surfaces a missing database) and is checked
  against `SELECT count(*)` once the stream ends. With `format="auto"` CSV comes last.
"""

from __future__ import annotations

import base64
import codecs
import csv
import dataclasses
import json
import logging
import random
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, get_args

import httpx
import msgpack

from data_platform.lib.influx.influxql import (
    count_window,
    parse_series_key,
    parse_tag_set,
    qualified_measurement,
    quote_ident,
    select_window,
    selector_window,
)
from data_platform.lib.influx.reader.model import (
    FieldInfo,
    FieldStats,
    FieldValue,
    SeriesBatch,
    Tags,
    normalize_tags,
)
from data_platform.lib.timing.window import Window

Format = Literal["auto", "msgpack", "csv", "json"]
WireFormat = Literal["msgpack", "csv", "json"]

_ACCEPT: dict[WireFormat, str] = {
    "msgpack": "application/x-msgpack",
    "json": "application/json",
    "csv": "application/csv",
}
# JSON before CSV: both parse at about the same speed here, but only JSON carries errors.
_AUTO_ORDER: tuple[WireFormat, ...] = ("msgpack", "json", "csv")
_CONTENT_TYPES: dict[str, WireFormat] = {
    "application/x-msgpack": "msgpack",
    "application/json": "json",
    "application/csv": "csv",
    "text/csv": "csv",
}
_MAX_ERROR_BODY = 64 * 1024
_MAX_BACKOFF_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True, repr=False)
class InfluxSettings:
    """Where and how to reach one InfluxDB database through the v1 `/query` API."""

    url: str
    database: str
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    verify_tls: bool = True
    ca_cert: str | None = None
    format: Format = "auto"
    chunk_size: int = 10_000

    def __repr__(self) -> str:
        secret = {"password": self.password, "token": self.token}
        parts = []
        for name in self.__dataclass_fields__:
            if name in secret:
                shown = "'***'" if secret[name] else "None"
            else:
                shown = repr(getattr(self, name))
            parts.append(f"{name}={shown}")
        return f"InfluxSettings({', '.join(parts)})"


# -- errors ---------------------------------------------------------------------------------------
class InfluxError(Exception):
    """Reading from InfluxDB failed. The message names the source, the window and a fix."""

    default_hint: ClassVar[str] = "Check the InfluxDB settings of this source"

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

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.source, self.what, self.cause, self.window, self.hint, self.status)
        return (type(self), args)


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


def _classify(status: int | None, message: str) -> tuple[type[InfluxError], str | None]:
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


# -- wire formats ---------------------------------------------------------------------------------
def _msgpack_ext(code: int, data: bytes) -> object:
    # tinylib/msgp (used by InfluxDB) encodes time.Time as ext 5: int64 seconds, int32 nanos.
    if code == 5 and len(data) == 12:
        seconds, nanos = struct.unpack(">qi", data)
        return seconds * 1_000_000_000 + nanos
    return msgpack.ExtType(code, data)


class _Truncated(Exception):
    """The body stopped in the middle of a document."""


def _msgpack_documents(chunks: Iterator[bytes]) -> Iterator[Any]:
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
            raise _Truncated(f"malformed msgpack ({exc})") from exc
    if unpacker.tell() != fed:
        raise _Truncated(f"{fed - unpacker.tell()} bytes of an unfinished msgpack document")


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


def _json_documents(chunks: Iterator[bytes]) -> Iterator[Any]:
    for line in _byte_lines(chunks):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise _Truncated(f"an unfinished or malformed JSON document ({exc})") from exc


def _text_lines(chunks: Iterator[bytes]) -> Iterator[str]:
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
class _CsvTally:
    """Values per field seen in a CSV stream; `blank` cells are null or an empty string."""

    present: dict[str, int]
    blank: dict[str, int]


# -- the client -----------------------------------------------------------------------------------
class InfluxClient:
    """A reader for one InfluxDB database; owns an HTTP connection pool. Use as a context manager."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        source: str,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self._max_retries = max(0, max_retries)
        self._backoff_s = max(0.0, backoff_s)
        self._log = logger or logging.getLogger(__name__)
        self._secrets = tuple(s for s in (settings.password, settings.token) if s)
        self._base_url = self._checked_url(settings.url)
        self._check_settings()
        self._negotiated: WireFormat | None = None
        # The field types last listed per measurement (SHOW FIELD KEYS), to read a field whose
        # type differs between shards without asking again for every window.
        self._known_types: dict[str, dict[str, frozenset[str]]] = {}
        self._http = httpx.Client(
            headers=self._headers(),
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            verify=self._tls(),
            follow_redirects=False,
        )

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return (
            f"InfluxClient(source={self.source!r}, url={self._base_url!r}, "
            f"database={self.settings.database!r})"
        )

    @property
    def wire_format(self) -> WireFormat | None:
        """The format in use: the configured one, or what `auto` settled on (None before)."""
        if self.settings.format != "auto":
            return self.settings.format
        return self._negotiated

    # -- public API -------------------------------------------------------------------------------
    def ping(self) -> str:
        """The server's version (from the `X-Influxdb-Version` header)."""
        what = "pinging"

        def attempt() -> str:
            try:
                response = self._http.get(f"{self._base_url}/ping")
            except httpx.TransportError as exc:
                raise self._transport_error(what, None, exc) from exc
            if response.status_code >= 300:
                raise self._status_error(what, None, response.status_code, response.content)
            version = response.headers.get("X-Influxdb-Version")
            if not version:
                try:
                    version = str(response.json().get("version") or "")
                except (ValueError, AttributeError):
                    version = ""
            return version or "unknown"

        return self._retrying(what, None, attempt)

    def list_measurements(self) -> list[str]:
        what = "listing measurements"
        names = [str(value) for value in _column(self._metadata("SHOW MEASUREMENTS", what), "name")]
        if not names:
            # InfluxDB 1.x answers SHOW MEASUREMENTS on a missing database with an empty list.
            self._check_database_exists(what)
        return names

    def list_tag_keys(self, measurement: str) -> list[str]:
        query = f"SHOW TAG KEYS FROM {self._source_of(measurement)}"
        series = self._metadata(query, f"listing tag keys of {quote_ident(measurement)}")
        return [str(value) for value in _column(series, "tagKey")]

    def list_field_keys(self, measurement: str) -> list[FieldInfo]:
        """Fields and their types; a field with different types in different shards appears
        once per type."""
        return self._field_keys(measurement)

    def list_series(self, measurement: str) -> list[Tags]:
        """The tag sets of the measurement's series (from the keys `SHOW SERIES` lists)."""
        query = f"SHOW SERIES FROM {self._source_of(measurement)}"
        series = self._metadata(query, f"listing series of {quote_ident(measurement)}")
        return [parse_series_key(str(key))[1] for key in _column(series, "key")]

    def stream_window(
        self,
        measurement: str,
        window: Window,
        *,
        fields: Sequence[str] | None = None,
        tag_filters: Mapping[str, Sequence[str]] | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[SeriesBatch]:
        """The points of `window` ([start, end)), one batch per series per chunk.

        Rows are `[time_ns, value, ...]` aligned with the batch's `columns` (field names).
        Once a batch has been yielded, any failure raises: discard what this window yielded
        and read it again; the stream is never resumed half-way.
        """
        size = self.settings.chunk_size if chunk_size is None else chunk_size
        if size <= 0:
            raise ValueError(f"chunk_size must be positive, got {size}")
        source = self._source_of(measurement)
        query = select_window(source, window, fields=fields, tag_filters=tag_filters)
        selected = tuple(dict.fromkeys(fields)) if fields is not None else None
        read = _WindowRead(measurement, source, window, query, size, selected, tag_filters)
        return self._stream_with_retries(read)

    def window_stats(self, measurement: str, window: Window) -> dict[str, FieldStats]:
        """Per field with values in the window: how many, and the first and last time.

        A field with several types (one per shard) is counted and timed across all of them.
        """
        source = self._source_of(measurement)
        what = f"counting {quote_ident(measurement)}"
        types = self._field_types(measurement, retry=True)
        query = count_window(source, window, field_types=types)
        counts = _field_counts(self._metadata(query, what, window))
        stats: dict[str, FieldStats] = {}
        for field, count in counts.items():
            several = len(types.get(field, ())) > 1
            kinds: Sequence[str | None] = sorted(types[field]) if several else [None]
            firsts = [
                t
                for kind in kinds
                if (t := self._selector_time("first", field, source, window, measurement, kind))
                is not None
            ]
            lasts = [
                t
                for kind in kinds
                if (t := self._selector_time("last", field, source, window, measurement, kind))
                is not None
            ]
            stats[field] = FieldStats(
                count=count,
                first_ns=min(firsts) if firsts else None,
                last_ns=max(lasts) if lasts else None,
            )
        return stats

    # -- settings ---------------------------------------------------------------------------------
    def _config_error(self, cause: str, hint: str) -> InfluxConfigError:
        return InfluxConfigError(self.source, "checking the InfluxDB settings", cause, hint=hint)

    def _checked_url(self, url: str) -> str:
        hint = "Set `influx.url` to the server's base URL, e.g. https://influx.example.com:8086"
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise self._config_error(f"invalid URL ({exc})", hint) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise self._config_error(f"{_redacted_url(parsed)!r} is not an http(s) URL", hint)
        if parsed.userinfo:
            raise self._config_error(
                f"{_redacted_url(parsed)!r} carries credentials",
                "Put them in the username/password or token settings, never in the URL",
            )
        if parsed.query or parsed.fragment:
            raise self._config_error(
                f"{_redacted_url(parsed)!r} has a query string or fragment", hint
            )
        return str(parsed).rstrip("/")

    def _check_settings(self) -> None:
        settings = self.settings
        if settings.format not in get_args(Format):
            raise self._config_error(
                f"unknown format {settings.format!r}",
                f"Use one of {', '.join(get_args(Format))}",
            )
        if not settings.database:
            raise self._config_error("no database given", "Set `influx.database`")
        if settings.token and (settings.username or settings.password):
            raise self._config_error(
                "both a token and a username/password are set",
                "Use INFLUX_TOKEN or INFLUX_USERNAME/INFLUX_PASSWORD, not both",
            )
        if settings.password and not settings.username:
            raise self._config_error(
                "a password is set without a username", "Set INFLUX_USERNAME as well"
            )
        if settings.chunk_size <= 0 or settings.timeout_s <= 0 or settings.connect_timeout_s <= 0:
            raise self._config_error(
                "chunk_size and the timeouts must be positive",
                "Fix `influx.chunk_size` or the timeouts",
            )

    def _headers(self) -> dict[str, str]:
        settings = self.settings
        # InfluxDB compresses on request, which costs more CPU on both ends than it saves on
        # the networks the platform reads over: ask for the body as is.
        headers = {"User-Agent": "data-platform-influx-reader", "Accept-Encoding": "identity"}
        # Credentials travel in headers only: query parameters end up in access logs.
        if settings.token:
            headers["Authorization"] = f"Token {settings.token}"
        elif settings.username:
            pair = f"{settings.username}:{settings.password or ''}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        return headers

    def _tls(self) -> ssl.SSLContext | bool:
        settings = self.settings
        if not settings.verify_tls:
            return False
        if settings.ca_cert:
            if not Path(settings.ca_cert).is_file():
                raise self._config_error(
                    f"CA certificate {settings.ca_cert!r} does not exist",
                    "Fix `influx.ca_cert` (a PEM file path)",
                )
            return ssl.create_default_context(cafile=settings.ca_cert)
        return True

    def _source_of(self, measurement: str) -> str:
        return qualified_measurement(
            measurement, self.settings.database, self.settings.retention_policy
        )

    # -- errors and retries -----------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _status_error(
        self, what: str, window: Window | None, status: int, body: bytes, header: str = ""
    ) -> InfluxError:
        message = _error_message(body) or header or f"HTTP {status}"
        kind, hint = _classify(status, message)
        cause = f"HTTP {status}: {message}" if not message.startswith("HTTP") else message
        return kind(self.source, what, self._redact(cause), window, hint, status)

    def _server_error(self, what: str, window: Window | None, message: str) -> InfluxError:
        kind, hint = _classify(None, message)
        return kind(self.source, what, self._redact(message), window, hint)

    def _transport_error(
        self, what: str, window: Window | None, exc: Exception, *, after: str = ""
    ) -> InfluxError:
        detail = str(exc) or type(exc).__name__
        if _tls_rejected(exc):
            # Not transient: every retry meets the same certificate.
            cause = f"the TLS certificate of {self._base_url} is not trusted ({detail})"
            hint = (
                "Set `influx.ca_cert` to the PEM file of the CA that signed the server's "
                "certificate (a private CA), or give the server a certificate for this host "
                "name from a CA this machine trusts"
            )
            return InfluxConfigError(self.source, what, self._redact(cause), window, hint)
        if isinstance(exc, httpx.ConnectError):
            cause = f"cannot connect to {self._base_url} ({detail})"
        elif isinstance(exc, httpx.TimeoutException):
            cause = f"timed out talking to {self._base_url} ({type(exc).__name__})"
        else:
            cause = f"connection to {self._base_url} failed ({detail})"
        return InfluxTransientError(self.source, what, self._redact(cause + after), window)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_s * (2**attempt), _MAX_BACKOFF_S)
        return delay * random.uniform(0.5, 1.5)

    def _log_retry(self, exc: InfluxError, attempt: int) -> float:
        delay = self._backoff(attempt)
        self._log.warning(
            "source '%s': %s failed: %s; retry %d of %d in %.2fs",
            self.source,
            exc.what,
            exc.cause,
            attempt + 1,
            self._max_retries,
            delay,
        )
        return delay

    def _gave_up(self, exc: InfluxTransientError, attempts: int) -> InfluxTransientError:
        if attempts <= 1:
            return exc
        cause = f"{exc.cause} (gave up after {attempts} attempts)"
        return InfluxTransientError(exc.source, exc.what, cause, exc.window, exc.hint, exc.status)

    def _retrying(self, what: str, window: Window | None, attempt_fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except InfluxTransientError as exc:
                if attempt >= self._max_retries:
                    raise self._gave_up(exc, attempt + 1) from exc
                time.sleep(self._log_retry(exc, attempt))
                attempt += 1

    # -- requests ---------------------------------------------------------------------------------
    def _open(
        self, query: str, fmt: WireFormat, chunk_size: int, what: str, window: Window | None
    ) -> httpx.Response:
        """Send a query and return the streamed response once its status is 200."""
        params = {
            "db": self.settings.database,
            "q": query,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(chunk_size),
        }
        request = self._http.build_request(
            "GET", f"{self._base_url}/query", params=params, headers={"Accept": _ACCEPT[fmt]}
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._transport_error(what, window, exc) from exc
        if response.status_code == 200:
            return response
        try:
            body = _read_prefix(response, _MAX_ERROR_BODY)
        except httpx.TransportError:
            body = b""
        finally:
            response.close()
        header = response.headers.get("X-Influxdb-Error", "")
        raise self._status_error(what, window, response.status_code, body, header)

    def _documents(
        self, response: httpx.Response, kind: WireFormat, what: str, window: Window | None
    ) -> Iterator[Any]:
        chunks = response.iter_bytes()
        if kind == "msgpack":
            return _msgpack_documents(chunks)
        if kind == "json":
            return _json_documents(chunks)
        raise InfluxConfigError(
            self.source,
            what,
            "the server answered a metadata query with CSV",
            window,
            "Check `influx.url`: it should point at the InfluxDB HTTP API",
        )

    def _content_kind(
        self, response: httpx.Response, what: str, window: Window | None
    ) -> WireFormat:
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = _CONTENT_TYPES.get(content_type)
        if kind is None:
            response.close()
            raise InfluxConfigError(
                self.source,
                what,
                f"unexpected content type {content_type or 'none'!r}",
                window,
                "Check `influx.url`: it should point at the InfluxDB HTTP API, not a proxy page",
            )
        return kind

    def _series(
        self, documents: Iterator[Any], what: str, window: Window | None
    ) -> Iterator[dict[str, Any]]:
        """The series of a response, raising on in-body errors and on a stream that ends early."""
        seen_result = False
        result_partial = False
        series_partial = False
        for document in documents:
            if not isinstance(document, dict):
                raise InfluxTransientError(
                    self.source, what, f"malformed response ({type(document).__name__})", window
                )
            error = document.get("error")
            if error:
                raise self._server_error(what, window, str(error))
            for result in document.get("results") or ():
                seen_result = True
                error = result.get("error")
                if error:
                    raise self._server_error(what, window, str(error))
                for message in result.get("messages") or ():
                    self._log.info(
                        "source '%s': InfluxDB says (%s): %s",
                        self.source,
                        message.get("level"),
                        message.get("text"),
                    )
                for series in result.get("series") or ():
                    series_partial = bool(series.get("partial"))
                    yield series
                result_partial = bool(result.get("partial"))
        if not seen_result:
            raise InfluxTransientError(
                self.source, what, "the response ended before any result", window
            )
        if result_partial or series_partial:
            raise InfluxTransientError(
                self.source,
                what,
                "the response ended while a result was still partial (stream cut short, or the "
                "server's max-row-limit truncated it)",
                window,
            )

    def _metadata(
        self, query: str, what: str, window: Window | None = None, *, retry: bool = True
    ) -> list[dict[str, Any]]:
        """All series of a small query (SHOW ..., aggregates), read as JSON."""

        def attempt() -> list[dict[str, Any]]:
            response = self._open(query, "json", self.settings.chunk_size, what, window)
            try:
                kind = self._content_kind(response, what, window)
                return list(
                    self._series(self._documents(response, kind, what, window), what, window)
                )
            except _Truncated as exc:
                raise InfluxTransientError(self.source, what, str(exc), window) from exc
            except httpx.TransportError as exc:
                raise self._transport_error(what, window, exc) from exc
            finally:
                response.close()

        return self._retrying(what, window, attempt) if retry else attempt()

    def _check_database_exists(self, what: str) -> None:
        try:
            databases = {
                str(name) for name in _column(self._metadata("SHOW DATABASES", what), "name")
            }
        except (InfluxQueryError, InfluxAuthError):
            return  # not allowed to list databases: nothing to conclude
        if databases and self.settings.database not in databases:
            raise InfluxDatabaseNotFound(
                self.source, what, f"database not found: {self.settings.database}"
            )

    def _field_keys(self, measurement: str, *, retry: bool = True) -> list[FieldInfo]:
        query = f"SHOW FIELD KEYS FROM {self._source_of(measurement)}"
        what = f"listing field keys of {quote_ident(measurement)}"
        series = self._metadata(query, what, retry=retry)
        keys = _column(series, "fieldKey")
        types = _column(series, "fieldType")
        infos = [FieldInfo(measurement, str(k), str(t)) for k, t in zip(keys, types, strict=True)]
        known: dict[str, set[str]] = {}
        for info in infos:
            known.setdefault(info.field, set()).add(info.influx_type)
        self._known_types[measurement] = {name: frozenset(t) for name, t in known.items()}
        return infos

    def _field_types(self, measurement: str, *, retry: bool = False) -> dict[str, frozenset[str]]:
        """Field name -> its types; read within a window's attempt, so no retries of its own
        unless asked."""
        types: dict[str, set[str]] = {}
        for info in self._field_keys(measurement, retry=retry):
            types.setdefault(info.field, set()).add(info.influx_type)
        return {name: frozenset(found) for name, found in types.items()}

    def _selector_time(
        self,
        selector: Literal["first", "last"],
        field: str,
        source: str,
        window: Window,
        measurement: str,
        influx_type: str | None = None,
    ) -> int | None:
        what = f"finding the {selector} {quote_ident(field)} of {quote_ident(measurement)}"
        query = selector_window(selector, field, source, window, influx_type)
        series = self._metadata(query, what, window)
        for piece in series:
            for row in piece.get("values") or ():
                return int(row[0])
        return None

    # -- streaming a window -----------------------------------------------------------------------
    def _stream_with_retries(self, read: _WindowRead) -> Iterator[SeriesBatch]:
        attempt = 0
        while True:
            progress = _Progress()
            try:
                yield from self._stream_once(read, progress)
                return
            except InfluxTransientError as exc:
                if progress.batches:
                    raise
                if attempt >= self._max_retries:
                    raise self._gave_up(exc, attempt + 1) from exc
                time.sleep(self._log_retry(exc, attempt))
                attempt += 1

    def _open_window(self, read: _WindowRead) -> tuple[httpx.Response, WireFormat]:
        """Open the window's stream; with `auto`, find the first format the server accepts."""
        if self.settings.format != "auto":
            candidates: tuple[WireFormat, ...] = (self.settings.format,)
        elif self._negotiated is not None:
            candidates = (self._negotiated,)
        else:
            candidates = _AUTO_ORDER
        for index, fmt in enumerate(candidates):
            try:
                response = self._open(read.query, fmt, read.chunk_size, read.what, read.window)
            except (InfluxQueryError, InfluxConfigError) as exc:
                # A 4xx answer to a format the server does not speak (InfluxDB 3 rejects
                # msgpack): try the next one. A query the server rejects fails in every format.
                if exc.status is None or index + 1 == len(candidates):
                    raise
                self._log.info(
                    "source '%s': the server refused %s (%s); trying %s",
                    self.source,
                    fmt,
                    exc.cause,
                    candidates[index + 1],
                )
                continue
            kind = self._content_kind(response, read.what, read.window)
            if self.settings.format == "auto" and self._negotiated is None:
                self._negotiated = kind
                self._log.info("source '%s': reading InfluxDB as %s", self.source, kind)
            return response, kind
        raise AssertionError("unreachable: the last candidate re-raises")

    def _stream_once(self, read: _WindowRead, progress: _Progress) -> Iterator[SeriesBatch]:
        types: dict[str, frozenset[str]] | None = None
        if self.wire_format in ("json", "csv"):
            # JSON writes 2.0 as 2 and CSV has no types at all: both need the schema.
            types = self._field_types(read.measurement)
        # A field whose type differs between shards is read once per type (see
        # `select_window`); msgpack reads go by the types last listed (`list_field_keys`).
        known = types if types is not None else self._known_types.get(read.measurement, {})
        if any(len(known.get(f, ())) > 1 for f in read.fields or known):
            query = select_window(
                read.source,
                read.window,
                fields=read.fields,
                tag_filters=read.tag_filters,
                field_types=known,
            )
            read = dataclasses.replace(read, query=query)
        response, kind = self._open_window(read)
        try:
            if kind != "msgpack" and types is None:
                types = self._field_types(read.measurement)
            if kind == "csv":
                tally = _CsvTally({}, {})
                for batch in self._csv_batches(response, read, types or {}, tally):
                    progress.batches += 1
                    yield _merged(batch)
                self._verify_csv(read, tally, types or {})
                return
            float_fields = (
                frozenset(name for name, found in types.items() if "float" in found)
                if types is not None
                else frozenset()
            )
            documents = self._documents(response, kind, read.what, read.window)
            for series in self._series(documents, read.what, read.window):
                batch = _merged(self._batch(series, read, float_fields))
                if batch.rows:
                    progress.batches += 1
                    yield batch
        except (_Truncated, csv.Error) as exc:
            raise self._broken(read, progress, str(exc)) from exc
        except httpx.TransportError as exc:
            raise self._broken(read, progress, str(exc) or type(exc).__name__) from exc
        finally:
            response.close()

    def _broken(self, read: _WindowRead, progress: _Progress, detail: str) -> InfluxTransientError:
        cause = f"the stream broke after {progress.batches} batches ({detail})"
        hint = "Discard what this window yielded and read it again; check the server's health"
        return InfluxTransientError(self.source, read.what, self._redact(cause), read.window, hint)

    def _batch(
        self, series: dict[str, Any], read: _WindowRead, float_fields: frozenset[str]
    ) -> SeriesBatch:
        columns = series.get("columns") or ()
        if not columns or columns[0] != "time":
            raise InfluxQueryError(
                self.source, read.what, f"unexpected columns {list(columns)!r}", read.window
            )
        fields = tuple(columns[1:])
        rows: list[list[FieldValue]] = series.get("values") or []
        for index, name in enumerate(fields, start=1):
            if name in float_fields:
                for row in rows:
                    value = row[index]
                    if type(value) is int:
                        row[index] = float(value)
        return SeriesBatch(
            measurement=str(series.get("name", read.measurement)),
            tags=normalize_tags(series.get("tags")),
            columns=fields,
            rows=rows,
        )

    def _csv_batches(
        self,
        response: httpx.Response,
        read: _WindowRead,
        types: Mapping[str, frozenset[str]],
        tally: _CsvTally,
    ) -> Iterator[SeriesBatch]:
        """Batches from CSV, cut where InfluxDB cuts chunks: at a new series or `chunk_size`."""
        reader = csv.reader(_text_lines(response.iter_bytes()))
        header_open = False
        columns: tuple[str, ...] = ()
        parsers: list[Callable[[str], FieldValue]] = []
        blanks: list[int] = []
        rows_under_header = 0
        batch: SeriesBatch | None = None
        batch_tags_text = ""
        tags_cache: dict[str, Tags] = {}
        chunk_size = read.chunk_size

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
                    raise self._server_error(read.what, read.window, ",".join(message))
                if row[:3] != ["name", "tags", "time"]:
                    raise InfluxQueryError(
                        self.source, read.what, f"unexpected CSV header {row[:5]!r}", read.window
                    )
                if tuple(row[3:]) != columns:
                    columns = tuple(row[3:])
                    parsers = _csv_parsers(columns, types)
                blanks = [0] * len(columns)
                rows_under_header = 0
                header_open = True
                continue
            if len(row) != len(columns) + 3:
                raise _Truncated(
                    f"a CSV row with {len(row)} cells under {len(columns) + 3} columns"
                )
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
                raise _Truncated(f"a CSV row without an epoch time: {row[:3]!r}") from None
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

    def _verify_csv(
        self, read: _WindowRead, tally: _CsvTally, types: Mapping[str, frozenset[str]]
    ) -> None:
        """CSV carries no errors or partial flags: compare what arrived with the server's count."""
        what = f"checking the CSV read of {quote_ident(read.measurement)}"
        query = count_window(read.source, read.window, read.tag_filters, types)
        expected = _field_counts(self._metadata(query, what, read.window))
        names = read.fields if read.fields is not None else sorted({*expected, *tally.present})
        for name in names:
            want = expected.get(name, 0)
            present = tally.present.get(name, 0)
            # An empty string and a missing value look the same in CSV.
            if not present <= want <= present + tally.blank.get(name, 0):
                raise InfluxTransientError(
                    self.source,
                    read.what,
                    f"the CSV response held {present} values of field {name!r} but the server "
                    f"counts {want}: the server cut the stream short (CSV hides its errors) or "
                    "the window changed while it was read",
                    read.window,
                    "Discard what this window yielded and read it again; prefer format msgpack "
                    "or json, which report server errors",
                )


@dataclass(frozen=True)
class _WindowRead:
    measurement: str
    source: str
    window: Window
    query: str
    chunk_size: int
    fields: tuple[str, ...] | None
    tag_filters: Mapping[str, Sequence[str]] | None

    @property
    def what(self) -> str:
        return f"reading {quote_ident(self.measurement)}"


@dataclass
class _Progress:
    batches: int = 0


def _column(series: list[dict[str, Any]], name: str) -> Iterator[Any]:
    for piece in series:
        columns: list[str] = list(piece.get("columns") or ())
        if name not in columns:
            continue
        index = columns.index(name)
        for row in piece.get("values") or ():
            yield row[index]


def _field_counts(series: list[dict[str, Any]]) -> dict[str, int]:
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


def _merged(batch: SeriesBatch) -> SeriesBatch:
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


def _csv_parsers(
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


def _tls_rejected(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    for data in response.iter_bytes():
        body += data
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _error_message(body: bytes) -> str:
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


def _redacted_url(url: httpx.URL) -> str:
    """The URL without user info or query string, for messages."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))
