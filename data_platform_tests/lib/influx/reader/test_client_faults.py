"""The InfluxDB reader against tiny HTTP servers that misbehave: cut streams, partial
results, CSV that hides errors, a server without msgpack."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
import pytest

from data_platform.lib.influx.reader.errors import InfluxTransientError
from data_platform.lib.influx.reader.model import SeriesBatch
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform_tests.lib.influx.reader.support import (
    EVERYTHING,
    T0_NS,
    client_for,
    read_all,
    typed,
)


@dataclass
class FakeInflux:
    """A tiny HTTP server that answers `/query` with whatever `respond` writes."""

    respond: Callable[[BaseHTTPRequestHandler, str, str], None]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers.items())))
                query = parse_qs(urlsplit(self.path).query).get("q", [""])[0]
                fake.respond(self, query, self.headers.get("Accept", ""))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_influx() -> Iterator[Callable[..., FakeInflux]]:
    started: list[FakeInflux] = []

    def start(respond: Callable[[BaseHTTPRequestHandler, str, str], None]) -> FakeInflux:
        started.append(FakeInflux(respond))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


FIELD_KEYS = {
    "results": [
        {
            "statement_id": 0,
            "series": [
                {"name": "m", "columns": ["fieldKey", "fieldType"], "values": [["v", "float"]]}
            ],
        }
    ]
}


def chunk(series_partial: bool, values: list[list[Any]]) -> dict[str, Any]:
    series: dict[str, Any] = {
        "name": "m",
        "tags": {"k": "a"},
        "columns": ["time", "v"],
        "values": values,
    }
    if series_partial:
        series["partial"] = True
    return {"results": [{"statement_id": 0, "series": [series], "partial": True}]}


def send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_chunked_then_drop(
    handler: BaseHTTPRequestHandler, content_type: str, piece: bytes
) -> None:
    """One complete HTTP chunk, then the connection closes without the final chunk."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    handler.wfile.flush()
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


FIRST_CHUNK = chunk(True, [[T0_NS, 1.0], [T0_NS + 1, 2.0]])


def cut_json_stream(handler: BaseHTTPRequestHandler, query: str, accept: str) -> None:
    if query.startswith("SHOW FIELD KEYS"):
        send(handler, 200, "application/json", json.dumps(FIELD_KEYS).encode())
    else:
        send_chunked_then_drop(
            handler, "application/json", json.dumps(FIRST_CHUNK).encode() + b"\n"
        )


def json_stream_ending_partial(handler: BaseHTTPRequestHandler, query: str, accept: str) -> None:
    if query.startswith("SHOW FIELD KEYS"):
        send(handler, 200, "application/json", json.dumps(FIELD_KEYS).encode())
    else:
        send(handler, 200, "application/json", json.dumps(FIRST_CHUNK).encode() + b"\n")


def packed(document: dict[str, Any]) -> bytes:
    data = msgpack.packb(document)
    assert isinstance(data, bytes)
    return data


def msgpack_stream_cut_inside_a_document(
    handler: BaseHTTPRequestHandler, query: str, accept: str
) -> None:
    first = packed(FIRST_CHUNK)
    second = packed(chunk(False, [[T0_NS + 2, 3.0]]))
    body = first + second[: len(second) // 2]
    send(handler, 200, "application/x-msgpack", body)


@pytest.mark.parametrize(
    "respond", [cut_json_stream, json_stream_ending_partial, msgpack_stream_cut_inside_a_document]
)
def test_stream_cut_midway_is_transient(
    fake_influx: Callable[..., FakeInflux], respond: Callable[..., None]
) -> None:
    fake = fake_influx(respond)
    with client_for(fake.url, "db", source="plant_cut", max_retries=3, version="1") as client:
        stream = client.stream_window(SeriesQuery("m", EVERYTHING))
        first = next(stream)
        assert first.rows == [[T0_NS, 1.0], [T0_NS + 1, 2.0]] and first.tags == (("k", "a"),)
        with pytest.raises(InfluxTransientError) as caught:
            next(stream)
    message = str(caught.value)
    assert "source 'plant_cut'" in message and f"window {EVERYTHING}" in message
    # Data had been handed out: no silent retry of the window inside the client.
    assert sum(1 for path, _ in fake.requests if "SELECT" in path) == 1


def test_csv_stream_shorter_than_the_count_is_transient(
    fake_influx: Callable[..., FakeInflux],
) -> None:
    # What InfluxDB 1.x sends when a query times out half-way in CSV: a clean, short 200 body.
    counts = {
        "results": [
            {
                "statement_id": 0,
                "series": [{"name": "m", "columns": ["time", "count_v"], "values": [[0, 3]]}],
            }
        ]
    }

    def respond(handler: BaseHTTPRequestHandler, query: str, accept: str) -> None:
        if query.startswith("SHOW FIELD KEYS"):
            send(handler, 200, "application/json", json.dumps(FIELD_KEYS).encode())
        elif query.startswith("SELECT count"):
            send(handler, 200, "application/json", json.dumps(counts).encode())
        else:
            body = f"name,tags,time,v\nm,k=a,{T0_NS},1\nm,k=a,{T0_NS + 1},2.5\n"
            send(handler, 200, "text/csv", body.encode())

    fake = fake_influx(respond)
    with client_for(fake.url, "db", format="csv", source="plant_csv", version="1") as client:
        stream = client.stream_window(SeriesQuery("m", EVERYTHING))
        assert typed([next(stream)]) == typed(
            [SeriesBatch("m", (("k", "a"),), ("v",), [[T0_NS, 1.0], [T0_NS + 1, 2.5]])]
        )
        with pytest.raises(InfluxTransientError, match="held 2 values of field 'v'") as caught:
            next(stream)
    assert "source 'plant_csv'" in str(caught.value)


def test_server_without_msgpack_falls_back_and_remembers(
    fake_influx: Callable[..., FakeInflux],
) -> None:
    complete = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "m",
                        "tags": {"k": "a", "empty": ""},
                        "columns": ["time", "v"],
                        "values": [[T0_NS, 2]],
                    }
                ],
            }
        ]
    }

    def respond(handler: BaseHTTPRequestHandler, query: str, accept: str) -> None:
        if accept == "application/x-msgpack":
            send(handler, 406, "application/json", b'{"error":"msgpack is not supported"}')
        elif query.startswith("SHOW FIELD KEYS"):
            send(handler, 200, "application/json", json.dumps(FIELD_KEYS).encode())
        else:
            send(handler, 200, "application/json", json.dumps(complete).encode() + b"\n")

    fake = fake_influx(respond)
    with client_for(fake.url, "db", token="tok-123") as client:
        for _ in range(2):
            batches = read_all(client, "m")
            assert typed(batches) == typed(
                [SeriesBatch("m", (("k", "a"),), ("v",), [[T0_NS, 2.0]])]
            )
        assert client.wire_format == "json"
    accepts = [headers.get("Accept") for path, headers in fake.requests if "SELECT" in path]
    assert accepts == ["application/x-msgpack", "application/json", "application/json"]
    for path, headers in fake.requests:
        assert headers["Authorization"] == "Token tok-123"
        assert "tok-123" not in path and "u=" not in path and "p=" not in path
