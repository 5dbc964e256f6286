"""One InfluxDB server's HTTP API: requests, in-body errors, redaction and retries.

`InfluxConnection` sends InfluxQL to `/query` and hands back streamed responses or the series
of small metadata answers; it knows nothing about windows or batches (see `client.py`).
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from data_platform.lib.influx.reader.errors import (
    InfluxConfigError,
    InfluxError,
    InfluxTransientError,
    classify,
)
from data_platform.lib.influx.reader.generation import Generation, forced, from_ping
from data_platform.lib.influx.reader.settings import Credentials, InfluxSettings, WireFormat
from data_platform.lib.influx.reader.wire import (
    ACCEPT,
    CONTENT_TYPES,
    Truncated,
    documents_from_arrays,
    error_message,
    json_documents,
    msgpack_documents,
)
from data_platform.lib.timing.window import Window

_MAX_ERROR_BODY = 64 * 1024
_MAX_BACKOFF_S = 30.0

T = TypeVar("T")


class InfluxConnection:
    """An HTTP connection pool to one database's server, with the source's name for messages."""

    def __init__(
        self,
        settings: InfluxSettings,
        credentials: Credentials,
        *,
        source: str,
        max_retries: int,
        backoff_s: float,
        logger: logging.Logger,
    ) -> None:
        self.settings = settings
        self.source = source
        self.base_url = settings.url
        self.log = logger
        self.max_retries = max(0, max_retries)
        self._backoff_s = max(0.0, backoff_s)
        self._secrets = credentials.secrets
        self._credentials = credentials
        self.generation: Generation | None = None
        self._http = httpx.Client(
            headers=self._headers(),
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            verify=self._tls(),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def ping(self) -> Generation:
        """The server's generation, from `/ping` (sent with the credentials: 3.x wants them)."""
        what = "pinging"

        def attempt() -> Generation:
            try:
                response = self._http.get(f"{self.base_url}/ping")
            except httpx.TransportError as exc:
                raise self.transport_error(what, None, exc) from exc
            if response.status_code >= 300:
                raise self.status_error(what, None, response.status_code, response.content)
            return from_ping(response.status_code, response.headers, response.content)

        return self.retrying(what, None, attempt)

    def ensure_generation(self) -> Generation:
        """The generation `influx.version` forces, else the one `/ping` shows (asked once)."""
        if self.generation is None:
            self.use(forced(self.settings.version) or self.ping())
            assert self.generation is not None
            self.log.info(
                "source '%s': InfluxDB %s, auth %s",
                self.source,
                self.generation.label,
                self.auth_scheme,
            )
        return self.generation

    def use(self, generation: Generation) -> None:
        """Speak to the server as `generation` does: its token scheme from now on."""
        self.generation = generation
        if self._credentials.token:
            self._http.headers["Authorization"] = (
                f"{generation.token_scheme} {self._credentials.token}"
            )

    @property
    def auth_scheme(self) -> str:
        """How requests authenticate (`Token`, `Bearer`, `Basic` or `none`); never the secret."""
        header = self._http.headers.get("Authorization", "")
        return header.split(" ", 1)[0] if header else "none"

    def _headers(self) -> dict[str, str]:
        # InfluxDB compresses on request, which costs more CPU on both ends than it saves on
        # the networks the platform reads over: ask for the body as is.
        headers = {"User-Agent": "data-platform-influx-reader", "Accept-Encoding": "identity"}
        credentials = self._credentials
        # Credentials travel in headers only: query parameters end up in access logs. `Token`
        # is what 2.x takes and 3.x accepts too, so `/ping` works before the generation is
        # known; `use` switches 3.x to `Bearer`.
        if credentials.token:
            headers["Authorization"] = f"Token {credentials.token}"
        elif credentials.username:
            pair = f"{credentials.username}:{credentials.password or ''}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        return headers

    def _tls(self) -> ssl.SSLContext | bool:
        settings = self.settings
        if not settings.verify_tls:
            return False
        if settings.ca_cert:
            if not Path(settings.ca_cert).is_file():
                raise InfluxConfigError(
                    self.source,
                    "checking the InfluxDB settings",
                    f"CA certificate {settings.ca_cert!r} does not exist",
                    hint="Fix `influx.ca_cert` (a PEM file path)",
                )
            return ssl.create_default_context(cafile=settings.ca_cert)
        return True

    # -- errors and retries -----------------------------------------------------------------------
    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def status_error(
        self, what: str, window: Window | None, status: int, body: bytes, header: str = ""
    ) -> InfluxError:
        message = error_message(body) or header or f"HTTP {status}"
        kind, hint = classify(status, message)
        cause = f"HTTP {status}: {message}" if not message.startswith("HTTP") else message
        return kind(self.source, what, self.redact(cause), window, hint, status)

    def server_error(self, what: str, window: Window | None, message: str) -> InfluxError:
        kind, hint = classify(None, message)
        return kind(self.source, what, self.redact(message), window, hint)

    def transport_error(
        self, what: str, window: Window | None, exc: Exception, *, after: str = ""
    ) -> InfluxError:
        detail = str(exc) or type(exc).__name__
        if _tls_rejected(exc):
            # Not transient: every retry meets the same certificate.
            cause = f"the TLS certificate of {self.base_url} is not trusted ({detail})"
            hint = (
                "Set `influx.ca_cert` to the PEM file of the CA that signed the server's "
                "certificate (a private CA), or give the server a certificate for this host "
                "name from a CA this machine trusts"
            )
            return InfluxConfigError(self.source, what, self.redact(cause), window, hint)
        if isinstance(exc, httpx.ConnectError):
            cause = f"cannot connect to {self.base_url} ({detail})"
        elif isinstance(exc, httpx.TimeoutException):
            cause = f"timed out talking to {self.base_url} ({type(exc).__name__})"
        else:
            cause = f"connection to {self.base_url} failed ({detail})"
        return InfluxTransientError(self.source, what, self.redact(cause + after), window)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_s * (2**attempt), _MAX_BACKOFF_S)
        return delay * random.uniform(0.5, 1.5)

    def log_retry(self, exc: InfluxError, attempt: int) -> float:
        delay = self._backoff(attempt)
        self.log.warning(
            "source '%s': %s failed: %s; retry %d of %d in %.2fs",
            self.source,
            exc.what,
            exc.cause,
            attempt + 1,
            self.max_retries,
            delay,
        )
        return delay

    def gave_up(self, exc: InfluxTransientError, attempts: int) -> InfluxTransientError:
        if attempts <= 1:
            return exc
        cause = f"{exc.cause} (gave up after {attempts} attempts)"
        return InfluxTransientError(exc.source, exc.what, cause, exc.window, exc.hint, exc.status)

    def retrying(self, what: str, window: Window | None, attempt_fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return attempt_fn()
            except InfluxTransientError as exc:
                if attempt >= self.max_retries:
                    raise self.gave_up(exc, attempt + 1) from exc
                time.sleep(self.log_retry(exc, attempt))
                attempt += 1

    # -- requests ---------------------------------------------------------------------------------
    def open(
        self, query: str, fmt: WireFormat, chunk_size: int, what: str, window: Window | None
    ) -> httpx.Response:
        """Send a query and return the streamed response once its status is 200."""
        self.ensure_generation()
        params = {
            "db": self.settings.database,
            "q": query,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(chunk_size),
        }
        request = self._http.build_request(
            "GET", f"{self.base_url}/query", params=params, headers={"Accept": ACCEPT[fmt]}
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self.transport_error(what, window, exc) from exc
        if response.status_code == 200:
            return response
        try:
            body = _read_prefix(response, _MAX_ERROR_BODY)
        except httpx.TransportError:
            body = b""
        finally:
            response.close()
        header = response.headers.get("X-Influxdb-Error", "")
        raise self.status_error(what, window, response.status_code, body, header)

    def documents(
        self, response: httpx.Response, kind: WireFormat, what: str, window: Window | None
    ) -> Iterator[Any]:
        chunks = response.iter_bytes()
        if kind == "msgpack":
            if self.generation is not None and self.generation.msgpack == "arrays":
                return documents_from_arrays(msgpack_documents(chunks))
            return msgpack_documents(chunks)
        if kind == "json":
            return json_documents(chunks)
        raise InfluxConfigError(
            self.source,
            what,
            "the server answered a metadata query with CSV",
            window,
            "Check `influx.url`: it should point at the InfluxDB HTTP API",
        )

    def content_kind(
        self, response: httpx.Response, what: str, window: Window | None
    ) -> WireFormat:
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = CONTENT_TYPES.get(content_type)
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

    def series(
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
                raise self.server_error(what, window, str(error))
            for result in document.get("results") or ():
                seen_result = True
                error = result.get("error")
                if error:
                    raise self.server_error(what, window, str(error))
                for message in result.get("messages") or ():
                    self.log.info(
                        "source '%s': InfluxDB says (%s): %s",
                        self.source,
                        message.get("level"),
                        message.get("text"),
                    )
                for series in result.get("series") or ():
                    series_partial = bool(series.get("partial"))
                    yield series
                result_partial = bool(result.get("partial"))
        if not seen_result and not self._empty_body_is_empty_result:
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

    @property
    def _empty_body_is_empty_result(self) -> bool:
        return self.generation is not None and self.generation.empty_body_is_empty_result

    def metadata(
        self, query: str, what: str, window: Window | None = None, *, retry: bool = True
    ) -> list[dict[str, Any]]:
        """All series of a small query (SHOW ..., aggregates), read as JSON."""
        self.ensure_generation()  # before the retries: `/ping` retries on its own

        def attempt() -> list[dict[str, Any]]:
            response = self.open(query, "json", self.settings.chunk_size, what, window)
            try:
                kind = self.content_kind(response, what, window)
                return list(self.series(self.documents(response, kind, what, window), what, window))
            except Truncated as exc:
                raise InfluxTransientError(self.source, what, str(exc), window) from exc
            except httpx.TransportError as exc:
                raise self.transport_error(what, window, exc) from exc
            finally:
                response.close()

        return self.retrying(what, window, attempt) if retry else attempt()


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
