"""The proxy itself answers as each generation does, so it cannot quietly become permissive."""

from __future__ import annotations

import base64
import json

import httpx
import msgpack
import pytest

from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.influx_compat.proxy import (
    SHOW_ERROR,
    V1,
    V2,
    V3,
    V3_EARLY,
    CompatProxy,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def data(influxd: LocalInfluxd, influx_db: str) -> str:
    influxd.write_lines(influx_db, "m,k=a v=2.0 1000000000\nm,k=b w=1i 2000000000")
    return influx_db


def _query(proxy: CompatProxy, db: str, q: str, accept: str, auth: str) -> httpx.Response:
    params = {"db": db, "q": q, "epoch": "ns", "chunked": "true"}
    headers = {"Accept": accept, "Authorization": auth}
    return httpx.get(f"{proxy.url}/query", params=params, headers=headers)


def test_3x_refuses_show_series_as_its_parser_does(compat_proxy, data: str) -> None:
    proxy = compat_proxy(V3)
    answer = _query(proxy, data, 'SHOW SERIES FROM "m"', "application/json", f"Bearer {V3.token}")
    assert answer.status_code == 200
    assert answer.json() == {"results": [{"statement_id": 0, "error": SHOW_ERROR}]}
    assert proxy.refused == ['SHOW SERIES FROM "m"']
    proxy.refused.clear()  # recorded as refused: the fixture would fail this test otherwise
    ok = _query(proxy, data, 'SHOW FIELD KEYS FROM "m"', "application/json", f"Token {V3.token}")
    assert ok.status_code == 200 and "fieldKey" in ok.text and proxy.refused == []


def test_3x_authenticates_every_path_and_2x_refuses_bearer(compat_proxy, data: str) -> None:
    v3 = compat_proxy(V3)
    assert httpx.get(f"{v3.url}/ping").status_code == 401
    ping = httpx.get(f"{v3.url}/ping", headers={"Authorization": f"Bearer {V3.token}"})
    assert ping.status_code == 200 and ping.headers["X-Influxdb-Build"] == "Core"
    assert ping.json()["version"] == V3.version
    v2 = compat_proxy(V2)
    assert httpx.get(f"{v2.url}/ping").status_code == 204
    q = "SHOW MEASUREMENTS"
    assert _query(v2, data, q, "application/json", f"Bearer {V2.token}").status_code == 401
    assert _query(v2, data, q, "application/json", f"Token {V2.token}").status_code == 200
    basic = base64.b64encode(f"anyone:{V2.token}".encode()).decode()
    assert _query(v2, data, q, "application/json", f"Basic {basic}").status_code == 200
    v1 = compat_proxy(V1)
    assert httpx.get(f"{v1.url}/ping").headers["X-Influxdb-Version"] == V1.version


def test_3x_encodings_framing_and_empty_body(compat_proxy, data: str) -> None:
    v3 = compat_proxy(V3)
    auth = f"Bearer {V3.token}"
    q = 'SELECT * FROM "m" GROUP BY *'
    framed = _query(v3, data, q, "application/json", auth)
    assert b"\n" not in framed.content and framed.content.count(b'}{"results"') == 1
    unpacker = msgpack.Unpacker()
    unpacker.feed(_query(v3, data, q, "application/x-msgpack", auth).content)
    packed = list(unpacker)
    assert len(packed) == 2  # one document per series chunk
    series = packed[0][0][0][1]
    assert series[0][:3] == ["m", {"k": "a"}, ["time", "v", "w"]]
    assert series[0][3] == [[1000000000, 2, None]]  # 2.0 comes back as an integer
    empty = _query(v3, data, 'SELECT * FROM "m" WHERE time > now()', "application/json", auth)
    assert empty.status_code == 200 and empty.content == b""
    early = compat_proxy(V3_EARLY)
    refused = _query(early, data, q, "application/x-msgpack", auth)
    assert refused.status_code == 500 and "msgpack" in json.loads(refused.content)["error"]
