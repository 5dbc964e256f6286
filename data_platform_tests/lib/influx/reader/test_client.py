"""The InfluxDB reader against a real influxd."""

from __future__ import annotations

import logging
import pickle
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from data_platform.lib.influx.reader.client import InfluxClient
from data_platform.lib.influx.reader.errors import (
    InfluxAuthError,
    InfluxConfigError,
    InfluxDatabaseNotFound,
    InfluxError,
    InfluxQueryError,
    InfluxTransientError,
)
from data_platform.lib.influx.reader.influxql import quote_ident
from data_platform.lib.influx.reader.model import FieldInfo, FieldStats, SeriesBatch
from data_platform.lib.influx.reader.settings import Credentials, InfluxSettings
from data_platform.lib.timing.window import Window
from data_platform.utils.local_servers import LocalInfluxd, free_port, start_influxd
from data_platform_tests.lib.influx.reader.support import (
    EVERYTHING,
    FORMATS,
    SECOND,
    T0,
    T0_NS,
    client_for,
    read_all,
    typed,
)

pytestmark = pytest.mark.integration


# -- line protocol for the fixtures ---------------------------------------------------------------
def lp_measurement(name: str) -> str:
    return name.replace(",", r"\,").replace(" ", r"\ ")


def lp_key(name: str) -> str:
    return name.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def lp_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the same data, read in every format ----------------------------------------------------------
SAMPLE = "\n".join(
    [
        f'cpu,host=a,region=eu usage=1.5,n=3i,ok=true,s="x, \\"quoted\\"" {T0_NS}',
        f"cpu,host=a,region=eu usage=2.0 {T0_NS + SECOND}",
        f"cpu,host=a,region=eu n=-7i,ok=false {T0_NS + 2 * SECOND}",
        f'cpu,host=b usage=0.25,s="two\nlines" {T0_NS + SECOND}',
        f"cpu,host=b usage=3 {T0_NS + 3 * SECOND}",
        f"cpu,host=c,region=us usage=4.5,n=9007199254740993i {T0_NS + 4 * SECOND}",
        f"mem,host=a free=10i,used=0.5 {T0_NS}",
        f"mem,host=a free=11i {T0_NS + SECOND}",
        f"mem,host=b used=0.75 {T0_NS + 2 * SECOND}",
    ]
)

EU_A = (("host", "a"), ("region", "eu"))
CPU_COLUMNS = ("n", "ok", "s", "usage")
EXPECTED_CPU = [
    SeriesBatch(
        "cpu",
        EU_A,
        CPU_COLUMNS,
        [
            [T0_NS, 3, True, 'x, "quoted"', 1.5],
            [T0_NS + SECOND, None, None, None, 2.0],
        ],
    ),
    SeriesBatch("cpu", EU_A, CPU_COLUMNS, [[T0_NS + 2 * SECOND, -7, False, None, None]]),
    SeriesBatch(
        "cpu",
        (("host", "b"),),
        CPU_COLUMNS,
        [
            [T0_NS + SECOND, None, None, "two\nlines", 0.25],
            [T0_NS + 3 * SECOND, None, None, None, 3.0],
        ],
    ),
    SeriesBatch(
        "cpu",
        (("host", "c"), ("region", "us")),
        CPU_COLUMNS,
        [
            [T0_NS + 4 * SECOND, 9007199254740993, None, None, 4.5],
        ],
    ),
]
EXPECTED_MEM = [
    SeriesBatch(
        "mem", (("host", "a"),), ("free", "used"), [[T0_NS, 10, 0.5], [T0_NS + SECOND, 11, None]]
    ),
    SeriesBatch("mem", (("host", "b"),), ("free", "used"), [[T0_NS + 2 * SECOND, None, 0.75]]),
]


@pytest.fixture
def sample_db(influxd: LocalInfluxd, influx_db: str) -> str:
    influxd.write_lines(influx_db, SAMPLE)
    return influx_db


def test_every_format_gives_identical_batches(influxd: LocalInfluxd, sample_db: str) -> None:
    results = {}
    for fmt in (*FORMATS, "auto"):
        with client_for(influxd.url, sample_db, format=fmt, chunk_size=2) as client:
            results[fmt] = typed(read_all(client, "cpu")) + typed(read_all(client, "mem"))
            assert client.wire_format == (fmt if fmt != "auto" else "msgpack")
    assert typed(EXPECTED_CPU) + typed(EXPECTED_MEM) == results["msgpack"]
    for fmt in ("json", "csv", "auto"):
        assert results[fmt] == results["msgpack"], fmt


def test_chunks_cut_at_chunk_size_and_series_boundaries(
    influxd: LocalInfluxd, sample_db: str
) -> None:
    for fmt in FORMATS:
        with client_for(influxd.url, sample_db, format=fmt) as client:
            one = read_all(client, "cpu", chunk_size=1)
            big = read_all(client, "cpu", chunk_size=10_000)
        assert [len(b.rows) for b in one] == [1] * 6, fmt
        assert [b.tags for b in big] == [EU_A, (("host", "b"),), (("host", "c"), ("region", "us"))]
        assert [row for b in one for row in b.rows] == [row for b in big for row in b.rows]


def test_window_is_start_inclusive_end_exclusive(influxd: LocalInfluxd, influx_db: str) -> None:
    start, end = T0, T0 + timedelta(seconds=10)
    start_ns, end_ns = T0_NS, T0_NS + 10 * SECOND
    influxd.write_lines(
        influx_db,
        "\n".join(
            f"m v={i}i {t}" for i, t in enumerate([start_ns - 1, start_ns, end_ns - 1, end_ns])
        ),
    )
    for fmt in FORMATS:
        with client_for(influxd.url, influx_db, format=fmt) as client:
            rows = [row for b in read_all(client, "m", Window(start, end)) for row in b.rows]
        assert rows == [[start_ns, 1], [end_ns - 1, 2]], fmt


def test_tag_filters_and_explicit_fields(influxd: LocalInfluxd, sample_db: str) -> None:
    for fmt in FORMATS:
        with client_for(influxd.url, sample_db, format=fmt) as client:
            batches = read_all(
                client,
                "cpu",
                fields=["usage", "s"],
                tag_filters={"host": ["a", "b"], "region": ["eu"]},
            )
            assert typed(batches) == typed(
                [
                    SeriesBatch(
                        "cpu",
                        EU_A,
                        ("usage", "s"),
                        [
                            [T0_NS, 1.5, 'x, "quoted"'],
                            [T0_NS + SECOND, 2.0, None],
                        ],
                    )
                ]
            ), fmt
            by_host = read_all(client, "cpu", tag_filters={"host": ["b", "c"]})
            assert [b.tags for b in by_host] == [
                (("host", "b"),),
                (("host", "c"), ("region", "us")),
            ]


def test_empty_window_yields_nothing(influxd: LocalInfluxd, sample_db: str) -> None:
    later = Window(T0 + timedelta(days=30), T0 + timedelta(days=31))
    for fmt in FORMATS:
        with client_for(influxd.url, sample_db, format=fmt) as client:
            assert read_all(client, "cpu", later) == []
            assert read_all(client, "no_such_measurement") == []
            assert client.window_stats("cpu", later) == {}


def test_schema_listing(influxd: LocalInfluxd, sample_db: str) -> None:
    with client_for(influxd.url, sample_db) as client:
        assert client.ping().startswith("1.")
        assert client.list_measurements() == ["cpu", "mem"]
        cpu_series = client.list_series("cpu")
        assert cpu_series is not None
        assert sorted({k for tags in cpu_series for k, _ in tags}) == [
            "host",
            "region",
        ]
        assert client.list_field_keys("mem") == [
            FieldInfo("mem", "free", "integer"),
            FieldInfo("mem", "used", "float"),
        ]
        assert client.list_series("cpu") == [
            EU_A,
            (("host", "b"),),
            (("host", "c"), ("region", "us")),
        ]


def test_hostile_identifiers_round_trip_without_injection(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    measurement = 'we"ird m,e=a;s\\u ü'
    tag_key, tag_value = 't "k",=;x', "v 'a', b=c;\\d ü"
    field_name = 'f "x", y=z;\\w'
    text = 'it\'s "quoted", with \\ and\nnewline'
    influxd.write_lines(
        influx_db,
        f"{lp_measurement(measurement)},{lp_key(tag_key)}={lp_key(tag_value)} "
        f"{lp_key(field_name)}=1.25,other={lp_string(text)} {T0_NS}\n"
        f"{lp_measurement(measurement)},{lp_key(tag_key)}=plain {lp_key(field_name)}=2.5 {T0_NS}\n",
    )
    tags = ((tag_key, tag_value),)
    with client_for(influxd.url, influx_db) as client:
        assert client.list_measurements() == [measurement]
        listed = client.list_series(measurement)
        assert listed is not None
        assert {k for tags in listed for k, _ in tags} == {tag_key}
        assert {f.field for f in client.list_field_keys(measurement)} == {field_name, "other"}
        assert client.list_series(measurement) == [((tag_key, "plain"),), tags]
        assert client.window_stats(measurement, EVERYTHING)[field_name] == FieldStats(
            2, T0_NS, T0_NS
        )

    for fmt in FORMATS:
        with client_for(influxd.url, influx_db, format=fmt) as client:
            batches = read_all(
                client, measurement, fields=[field_name], tag_filters={tag_key: [tag_value]}
            )
            assert typed(batches) == typed(
                [SeriesBatch(measurement, tags, (field_name,), [[T0_NS, 1.25]])]
            ), fmt
            everything = read_all(client, measurement)
            assert [b.tags for b in everything] == [((tag_key, "plain"),), tags]
            assert everything[1].rows == [[T0_NS, 1.25, text]]
            # A value that would widen the filter if it were pasted into the query unescaped.
            injected = read_all(client, measurement, tag_filters={tag_key: ["x' OR 1=1 OR 'a'='a"]})
            assert injected == []
            assert read_all(client, 'cpu"; DROP DATABASE "x') == []
    with client_for(influxd.url, influx_db) as client:
        assert client.list_measurements() == [measurement]


def test_retention_policy_qualifies_the_measurement(influxd: LocalInfluxd, influx_db: str) -> None:
    rp = 'raw "1y"'
    influxd.query(
        f"CREATE RETENTION POLICY {quote_ident(rp)} ON {quote_ident(influx_db)} DURATION 0s REPLICATION 1"
    )
    httpx.post(
        f"{influxd.url}/write", params={"db": influx_db, "rp": rp}, content=f"m v=1i {T0_NS}"
    ).raise_for_status()
    with client_for(influxd.url, influx_db, retention_policy=rp) as client:
        assert [b.rows for b in read_all(client, "m")] == [[[T0_NS, 1]]]
        assert client.list_field_keys("m") == [FieldInfo("m", "v", "integer")]
    with client_for(influxd.url, influx_db) as client:
        assert read_all(client, "m") == []
    with client_for(influxd.url, influx_db, retention_policy="missing") as client:
        with pytest.raises(InfluxQueryError, match="retention policy not found") as caught:
            read_all(client, "m")
        assert "influx.retention_policy" in str(caught.value)


def test_field_with_different_types_in_different_shards(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    three_weeks = 21 * 24 * 3600 * SECOND
    influxd.write_lines(influx_db, f'm v=1.5 {T0_NS}\nm v="text" {T0_NS + three_weeks}\n')
    with client_for(influxd.url, influx_db) as client:
        assert client.list_field_keys("m") == [
            FieldInfo("m", "v", "float"),
            FieldInfo("m", "v", "string"),
        ]
        later = Window(T0 + timedelta(days=20), T0 + timedelta(days=22))
        for fmt in FORMATS:
            with client_for(influxd.url, influx_db, format=fmt) as typed_client:
                assert [b.rows for b in read_all(typed_client, "m", later)] == [
                    [[T0_NS + three_weeks, "text"]]
                ]


def test_window_stats_counts_per_field(influxd: LocalInfluxd, sample_db: str) -> None:
    with client_for(influxd.url, sample_db) as client:
        stats = client.window_stats("cpu", EVERYTHING)
        first_seconds = Window(T0, T0 + timedelta(seconds=2))
        early = client.window_stats("cpu", first_seconds)
    assert stats == {
        "n": FieldStats(3, T0_NS, T0_NS + 4 * SECOND),
        "ok": FieldStats(2, T0_NS, T0_NS + 2 * SECOND),
        "s": FieldStats(2, T0_NS, T0_NS + SECOND),
        "usage": FieldStats(5, T0_NS, T0_NS + 4 * SECOND),
    }
    assert early == {
        "n": FieldStats(1, T0_NS, T0_NS),
        "ok": FieldStats(1, T0_NS, T0_NS),
        "s": FieldStats(2, T0_NS, T0_NS + SECOND),
        "usage": FieldStats(3, T0_NS, T0_NS + SECOND),
    }


# -- errors ---------------------------------------------------------------------------------------
def test_wrong_password_is_an_auth_error_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_influxd(tmp_path / "influxd", auth_enabled=True)
    try:
        server.query("CREATE USER admin WITH PASSWORD 'right-pw' WITH ALL PRIVILEGES")
        admin = ("admin", "right-pw")
        server.create_database("secured", auth=admin)
        server.write_lines("secured", f"m v=1i {T0_NS}", auth=admin)
        secret = "wrong-Pa55word"
        settings = InfluxSettings(server.url, "secured")
        credentials = Credentials(username="admin", password=secret)
        assert secret not in repr(settings) and secret not in repr(credentials)
        with InfluxClient(settings, credentials, source="plant_test", backoff_s=0.01) as client:
            with pytest.raises(InfluxAuthError) as listing:
                client.list_measurements()
            with pytest.raises(InfluxAuthError) as reading:
                read_all(client, "m")
        for caught in (listing.value, reading.value):
            assert secret not in str(caught) and secret not in repr(caught)
            assert "INFLUX_PASSWORD" in str(caught) and "source 'plant_test'" in str(caught)
        assert str(EVERYTHING) in str(reading.value)
        assert secret not in caplog.text

        with client_for(server.url, "secured", username="admin", password="right-pw") as client:
            assert client.list_measurements() == ["m"]
            assert [b.rows for b in read_all(client, "m")] == [[[T0_NS, 1]]]
        with client_for(server.url, "secured") as anonymous, pytest.raises(InfluxAuthError):
            anonymous.list_measurements()
    finally:
        server.stop()


def test_unknown_database(influxd: LocalInfluxd) -> None:
    for fmt in (*FORMATS, "auto"):
        with client_for(influxd.url, "no_such_db", format=fmt) as client:
            with pytest.raises(InfluxDatabaseNotFound, match=r"influx\.database") as caught:
                read_all(client, "m")
            assert "source 'plant_test'" in str(caught.value)
    with client_for(influxd.url, "no_such_db") as client, pytest.raises(InfluxDatabaseNotFound):
        client.list_measurements()


def test_query_error_inside_a_200_body(influxd: LocalInfluxd, sample_db: str) -> None:
    # InfluxDB 1.x/2.x drop statement errors from CSV, so only these two can report it.
    for fmt in ("msgpack", "json"):
        with (
            client_for(influxd.url, sample_db, format=fmt) as client,
            pytest.raises(InfluxQueryError, match="non-time field") as caught,
        ):
            read_all(client, "cpu", fields=["time"])
        assert f"window {EVERYTHING}" in str(caught.value)


def test_query_timeout_never_looks_like_success(tmp_path: Path) -> None:
    server = start_influxd(tmp_path / "influxd", query_timeout="1ms")
    try:
        server.create_database("big")
        server.write_lines(
            "big", "\n".join(f"m,s=s{i % 20} v={i}i {T0_NS + i}" for i in range(100_000))
        )
        for fmt in (*FORMATS, "auto"):
            with client_for(server.url, "big", format=fmt) as client:
                with pytest.raises(InfluxQueryError, match="timeout") as caught:
                    read_all(client, "m")
                assert "query-timeout" in str(caught.value)
    finally:
        server.stop()


def test_connection_refused_is_transient_after_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url, "db", max_retries=2, username="u", password="s3cret-pw") as client:
        with pytest.raises(InfluxTransientError, match="after 3 attempts") as listing:
            client.list_measurements()
        with pytest.raises(InfluxTransientError) as reading:
            read_all(client, "m")
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 4
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in str(listing.value)
    assert "source 'plant_test'" in str(reading.value) and str(EVERYTHING) in str(reading.value)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(InfluxConfigError, match="not an http"):
        client_for("ftp://influx:8086", "db")
    with pytest.raises(InfluxConfigError) as caught:
        client_for("http://admin:hunter2@influx:8086", "db")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(InfluxConfigError, match="not both"):
        client_for("http://influx:8086", "db", token="t", username="u", password="p")
    with pytest.raises(InfluxConfigError, match="ca_cert"):
        client_for("https://influx:8086", "db", ca_cert="/no/such/ca.pem")


def test_errors_survive_pickling() -> None:
    error = InfluxDatabaseNotFound("plant", 'reading "m"', "database not found: x", EVERYTHING)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InfluxDatabaseNotFound and str(copy) == str(error)
    assert copy.source == "plant" and copy.window == EVERYTHING
    assert isinstance(copy, InfluxError)
