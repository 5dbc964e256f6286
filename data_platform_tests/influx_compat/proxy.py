"""A small HTTP proxy on 127.0.0.1 that answers the v1 `/query` API as one InfluxDB generation.

The data and InfluxQL come from a real influxd 1.x behind it; the proxy changes what differs
between generations as `data_platform/lib/influx/reader/GENERATIONS.md` records it: refused
statements and their errors, msgpack layout, JSON framing, empty bodies, `/ping` and its
headers, accepted auth schemes. Every statement is recorded; one the profile refuses is kept
in `refused` (the fixture fails the test on it).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgpack

SHOW_ERROR = (
    "error in InfluxQL statement: parsing error: invalid SHOW statement, expected DATABASES, "
    "FIELD KEYS, MEASUREMENTS, TAG KEYS, TAG VALUES, or RETENTION POLICIES following SHOW at "
    "pos 5"
)
_SHOW_KINDS = ("DATABASES", "FIELD KEYS", "MEASUREMENTS", "TAG KEYS", "TAG VALUES", "RETENTION")


@dataclass(frozen=True)
class Profile:
    """One generation as the proxy plays it."""

    version: str  # as `/ping` reports it
    token: str | None = None

    @property
    def major(self) -> int:
        return int(self.version.lstrip("v").split(".")[0])

    @property
    def minor(self) -> int:
        return int(self.version.lstrip("v").split(".")[1])

    def refuses(self, statement: str) -> bool:
        """InfluxDB 3 parses SHOW only for the kinds its error message lists."""
        text = statement.strip().upper()
        if self.major < 3 or not text.startswith("SHOW "):
            return False
        return not any(text[5:].lstrip().startswith(kind) for kind in _SHOW_KINDS)

    def authorized(self, header: str, params: dict[str, str]) -> bool:
        if self.token is None:
            return True
        scheme, _, value = header.partition(" ")
        if self.major == 2:
            # 2.x: `Token`, Basic `<user>:<token>`, or `u`/`p`; never `Bearer`.
            if scheme == "Token":
                return value == self.token
            if scheme == "Basic":
                pair = base64.b64decode(value).decode("utf-8", "replace")
                return pair.partition(":")[2] == self.token
            return not header and params.get("p") == self.token
        # 3.x: `Bearer` or `Token`.
        return scheme in ("Bearer", "Token") and value == self.token


V1 = Profile("1.8.10")
V2 = Profile("v2.7.11", token="token-2x-secret")
V3 = Profile("3.7.0", token="apiv3_token-secret")
V3_EARLY = Profile("3.5.0", token="apiv3_token-secret")


@dataclass
class CompatProxy:
    upstream: str
    profile: Profile
    statements: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- answers ----------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        params = dict(urllib.parse.parse_qsl(parsed.query))
        header = handler.headers.get("Authorization", "")
        self.auth_headers.append(header.split(" ", 1)[0])
        profile = self.profile
        needs_auth = parsed.path == "/query" or profile.major >= 3
        if needs_auth and not profile.authorized(header, params):
            body = {"code": "unauthorized", "message": "unauthorized access"}
            return _send(handler, 401, "application/json", json.dumps(body).encode())
        if parsed.path == "/ping":
            return self._ping(handler)
        if parsed.path != "/query":
            return _send(handler, 404, "text/plain", b"404 page not found")
        query = params.get("q", "")
        statements = [s.strip() for s in query.split(";") if s.strip()]
        self.statements.extend(statements)
        accept = handler.headers.get("Accept", "application/json")
        if any(profile.refuses(s) for s in statements):
            self.refused.extend(s for s in statements if profile.refuses(s))
            error = {"results": [{"statement_id": 0, "error": SHOW_ERROR}]}
            return _send(handler, 200, "application/json", json.dumps(error).encode())
        if profile.major < 3:
            return self._forward(handler, params, accept)
        if "msgpack" in accept:
            if profile.minor < 7:
                body = b'{"error":"unsupported format: application/x-msgpack"}'
                return _send(handler, 500, "application/json", body)
            return self._documents(handler, params, "application/x-msgpack", _as_arrays)
        if "csv" in accept:
            return self._forward(handler, params, accept)
        return self._documents(handler, params, "application/json", _compact_json)

    def _ping(self, handler: BaseHTTPRequestHandler) -> None:
        profile = self.profile
        if profile.major >= 3:
            body = json.dumps({"version": profile.version, "revision": "compat"}).encode()
            headers = {"X-Influxdb-Build": "Core", "X-Influxdb-Version": profile.version}
            return _send(handler, 200, "application/json", body, headers)
        headers = {"X-Influxdb-Version": profile.version}
        if profile.major == 2:
            headers["X-Influxdb-Build"] = "OSS"
        return _send(handler, 204, "", b"", headers)

    def _upstream(self, params: dict[str, str], accept: str) -> Any:
        forwarded = {k: v for k, v in params.items() if k not in ("u", "p")}
        url = f"{self.upstream}/query?{urllib.parse.urlencode(forwarded)}"
        return urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}))

    def _forward(
        self, handler: BaseHTTPRequestHandler, params: dict[str, str], accept: str
    ) -> None:
        try:
            response = self._upstream(params, accept)
        except urllib.error.HTTPError as exc:
            return _send(handler, exc.code, exc.headers.get("Content-Type", ""), exc.read())
        with response:
            _start_chunked(handler, 200, response.headers.get("Content-Type", ""))
            while data := response.read1(65536):
                _chunk(handler, data)
            _chunk(handler, b"")

    def _documents(
        self, handler: BaseHTTPRequestHandler, params: dict[str, str], kind: str, encode: Any
    ) -> None:
        """3.x: each upstream document re-encoded, back to back; nothing when no rows."""
        try:
            response = self._upstream(params, "application/json")
        except urllib.error.HTTPError as exc:
            return _send(handler, exc.code, "application/json", exc.read())
        with response:
            documents = [json.loads(line) for line in response.read().splitlines() if line]
        rows = [
            d
            for d in documents
            if d.get("error")
            or any(r.get("series") or r.get("error") for r in d.get("results") or ())
        ]
        _start_chunked(handler, 200, kind)
        for document in rows:
            _chunk(handler, encode(document))
        _chunk(handler, b"")


def _compact_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _as_arrays(document: dict[str, Any]) -> bytes:
    """msgpack as 3.7+ writes it: structs as arrays, empty members left out, whole floats as
    integers (JSON from 1.x already writes 2.0 as 2)."""
    results = []
    for result in document.get("results") or ():
        item: list[Any] = [result.get("statement_id", 0)]
        if result.get("series"):
            item.append([_series(s) for s in result["series"]])
        if result.get("partial"):
            item.append(True)
        if result.get("error"):
            item.append(result["error"])
        results.append(item)
    return bytes(msgpack.packb([results] if results else []) or b"")


def _series(series: dict[str, Any]) -> list[Any]:
    return [
        series[key] for key in ("name", "tags", "columns", "values", "partial") if series.get(key)
    ]


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    if content_type:
        handler.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _start_chunked(handler: BaseHTTPRequestHandler, status: int, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def _chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()
