"""Line-protocol files as a source: reading files, windows, and a round trip via influxd."""

from __future__ import annotations

import gzip
import os
import random
import tracemalloc
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from data_platform.lib.influx.reader import files
from data_platform.lib.influx.reader.errors import LineProtocolError
from data_platform.lib.influx.reader.files import ScanStats, iter_file_points
from data_platform.lib.influx.reader.line_protocol import Point
from data_platform.lib.influx.reader.model import (
    FieldInfo,
    FieldStats,
    FieldValue,
    SeriesBatch,
    Tags,
)
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.source import LineProtocolSource
from data_platform.lib.timing.window import Window
from data_platform.utils.local_servers import LocalInfluxd

T0 = 1_700_000_000_000_000_000
BASE = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # T0


EVERYTHING = Window(datetime(1960, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def window(start_s: float, end_s: float) -> Window:
    return Window(BASE + timedelta(seconds=start_s), BASE + timedelta(seconds=end_s))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- files ----------------------------------------------------------------------------------------


def test_gzip_is_detected_by_magic_bytes(tmp_path: Path) -> None:
    text = "m,t=a v=1 1\nm,t=b v=2 2\n"
    plain = write(tmp_path / "plain.lp", text)
    (tmp_path / "data.lp.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "misnamed.lp").write_bytes(gzip.compress(text.encode()))
    expected = list(iter_file_points(plain))
    assert len(expected) == 2
    assert list(iter_file_points(tmp_path / "data.lp.gz")) == expected
    assert list(iter_file_points(tmp_path / "misnamed.lp")) == expected


EXPORT = """\
# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z
# DDL
CREATE DATABASE plant WITH NAME autogen
CREATE RETENTION POLICY "short" ON "plant" DURATION 1h REPLICATION 1
# DML
# CONTEXT-DATABASE:plant
# CONTEXT-RETENTION-POLICY:autogen
# writing tsm data
power,site=north active=1.5 1700000000000000000
power,site=north reactive=2i 1700000000000000000
# writing wal data
power,site=north active=2.5 1700000001000000000
"""


def test_export_header_is_skipped_and_context_recorded(tmp_path: Path) -> None:
    path = write(tmp_path / "export.lp", EXPORT)
    stats = ScanStats()
    points = list(iter_file_points(path, stats=stats))
    assert [(p.measurement, p.fields, p.time_ns) for p in points] == [
        ("power", {"active": 1.5}, T0),
        ("power", {"reactive": 2}, T0),
        ("power", {"active": 2.5}, T0 + 1_000_000_000),
    ]
    assert stats.databases == ["plant"]
    assert stats.retention_policies == ["autogen"]
    assert (stats.lines, stats.points, stats.skipped_lines) == (12, 3, 0)


def test_missing_timestamp_gets_default_or_file_mtime(tmp_path: Path) -> None:
    path = write(tmp_path / "now.lp", "m v=1\nm v=2 7\n")
    os.utime(path, ns=(T0, T0 + 42))
    assert [p.time_ns for p in iter_file_points(path, default_time_ns=99)] == [99, 7]
    assert [p.time_ns for p in iter_file_points(path)] == [T0 + 42, 7]


def test_string_values_may_span_physical_lines(tmp_path: Path) -> None:
    text = 'm s="one\n\n# not a comment\ntwo",v=1 5\nm v=2 6\nm v=1.2.3 7\n'
    path = write(tmp_path / "multi.lp", text)
    points = iter_file_points(path)
    assert next(points).fields == {"s": "one\n\n# not a comment\ntwo", "v": 1.0}
    assert next(points).fields == {"v": 2.0}
    with pytest.raises(LineProtocolError) as caught:
        next(points)
    assert caught.value.line_no == 6


def test_unterminated_string_in_skip_mode_resumes_after_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "open.lp", 'm v=1 1\nm s="never closed 2\nm v=3 3\nm v=4 4\n')
    with pytest.raises(LineProtocolError, match="unterminated string") as caught:
        list(iter_file_points(path))
    assert caught.value.line_no == 2
    stats = ScanStats()
    times = [p.time_ns for p in iter_file_points(path, on_error="skip", stats=stats)]
    assert times == [1, 3, 4]
    assert stats.skipped_lines == 1
    assert stats.errors[0].line_no == 2


def test_on_error_skip_counts_malformed_lines(tmp_path: Path) -> None:
    lines = ["m v=1 1", "m v=NaN 2", "m v=3 3", "garbage", "m v=tRue 5", "m v=6 6"]
    path = write(tmp_path / "mixed.lp", "\n".join(lines) + "\n")
    path.write_bytes(path.read_bytes() + b"m v=\xff 7\n")
    stats = ScanStats()
    points = list(iter_file_points(path, on_error="skip", stats=stats))
    assert [p.time_ns for p in points] == [1, 3, 6]
    assert stats.skipped_lines == 4
    assert [e.line_no for e in stats.errors] == [2, 4, 5, 7]
    assert "not valid UTF-8" in stats.errors[-1].reason
    assert "invalid value" in stats.errors[-1].reason
    with pytest.raises(LineProtocolError) as caught:
        list(iter_file_points(path))
    assert caught.value.line_no == 2


def test_on_error_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error must be"):
        iter_file_points(tmp_path / "x.lp", on_error="ignore")  # type: ignore[arg-type]


def test_reading_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.lp.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(60_000):
            handle.write(
                f'plant,site=s{i % 7},device=inv\\ {i % 13} p={i}.5,q={i}i,s="r" {T0 + i}\n'
            )
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_file_points(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 4 * 1024 * 1024


# -- LineProtocolSource ---------------------------------------------------------------------------


def batches_as_rows(batches: list[SeriesBatch]) -> dict[Tags, list[list[FieldValue]]]:
    rows: dict[Tags, list[list[FieldValue]]] = {}
    for batch in batches:
        rows.setdefault(batch.tags, []).extend(batch.rows)
    return rows


@pytest.fixture
def plant_files(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    (folder / "2023").mkdir(parents=True)
    write(
        folder / "2023" / "a.lp",
        "# CONTEXT-DATABASE:plant\n"
        f"power,site=north,device=inv\\ 01 active=1.5,ok=true {T0}\n"
        f"power,site=north,device=inv\\ 01 active=2.5 {T0 + 2_000_000_000}\n"
        f'power,site=south active=9,mode="auto" {T0 + 1_000_000_000}\n'
        f"temp,room=a value=20i {T0}\n",
    )
    (folder / "2023" / "b.lp.gz").write_bytes(
        gzip.compress(
            (
                # the same point again: fields merge, the later write wins
                f"power,device=inv\\ 01,site=north active=1.75,reactive=3i {T0}\n"
                f"power,site=north,device=inv\\ 01 active=4 {T0 + 3_000_000_000}\n"
                # a field written with another type in another file
                f'temp,room=b value="n/a" {T0 + 5_000_000_000}\n'
            ).encode()
        )
    )
    write(folder / "late.lp", f"power,site=east active=7 {T0 + 3600 * 1_000_000_000}\n")
    return folder


def test_schema_discovery(plant_files: Path) -> None:
    source = LineProtocolSource(str(plant_files / "**" / "*.lp*"))
    assert [p.name for p in source.paths()] == ["a.lp", "b.lp.gz", "late.lp"]
    assert source.list_measurements() == ["power", "temp"]
    assert sorted({k for tags in source.list_series("power") for k, _ in tags}) == [
        "device",
        "site",
    ]
    assert source.list_field_keys("power") == [
        FieldInfo("power", "active", "float"),
        FieldInfo("power", "mode", "string"),
        FieldInfo("power", "ok", "boolean"),
        FieldInfo("power", "reactive", "integer"),
    ]
    assert source.list_field_keys("temp") == [
        FieldInfo("temp", "value", "integer"),
        FieldInfo("temp", "value", "string"),
    ]
    assert source.list_field_keys("nothing") == []
    assert source.files()[0].stats.databases == ["plant"]


def test_unsigned_fields_are_listed_as_unsigned(tmp_path: Path) -> None:
    write(tmp_path / "u.lp", "m a=1u,b=2i 1\nm a=3i 2\n")
    source = LineProtocolSource(tmp_path / "u.lp")
    assert [f.influx_type for f in source.list_field_keys("m")] == [
        "integer",
        "unsigned",
        "integer",
    ]


def test_stream_window_merges_sorts_and_filters(plant_files: Path) -> None:
    source = LineProtocolSource([plant_files / "2023" / "b.lp.gz", str(plant_files / "*.lp")])
    assert [p.name for p in source.paths()] == ["b.lp.gz", "late.lp"]
    source = LineProtocolSource(str(plant_files / "**" / "*.lp*"))
    batches = list(source.stream_window(SeriesQuery("power", window(0, 60))))
    assert all(b.columns == ("active", "mode", "ok", "reactive") for b in batches)
    assert batches_as_rows(batches) == {
        (("device", "inv 01"), ("site", "north")): [
            [T0, 1.75, None, True, 3],
            [T0 + 2_000_000_000, 2.5, None, None, None],
            [T0 + 3_000_000_000, 4.0, None, None, None],
        ],
        (("site", "south"),): [[T0 + 1_000_000_000, 9.0, "auto", None, None]],
    }
    # the end is exclusive, the start inclusive
    north = batches_as_rows(list(source.stream_window(SeriesQuery("power", window(2, 3)))))
    assert north == {
        (("device", "inv 01"), ("site", "north")): [[T0 + 2_000_000_000, 2.5, None, None, None]]
    }
    assert list(source.stream_window(SeriesQuery("power", window(-60, 0)))) == []
    # projection and tag filters
    projected = list(
        source.stream_window(
            SeriesQuery(
                "power", window(0, 60), fields=["reactive"], tag_filters={"site": ["north"]}
            )
        )
    )
    assert [(b.tags, b.columns, b.rows) for b in projected] == [
        ((("device", "inv 01"), ("site", "north")), ("reactive",), [[T0, 3]])
    ]
    no_device = list(
        source.stream_window(SeriesQuery("power", window(0, 60), tag_filters={"device": [""]}))
    )
    assert [b.tags for b in no_device] == [(("site", "south"),)]
    with pytest.raises(ValueError, match="give a list of values"):
        list(
            source.stream_window(SeriesQuery("power", window(0, 60), tag_filters={"site": "north"}))
        )


def test_window_stats(plant_files: Path) -> None:
    source = LineProtocolSource(str(plant_files / "**" / "*.lp*"))
    assert source.window_stats("power", window(0, 60)) == {
        "active": FieldStats(4, T0, T0 + 3_000_000_000),
        "mode": FieldStats(1, T0 + 1_000_000_000, T0 + 1_000_000_000),
        "ok": FieldStats(1, T0, T0),
        "reactive": FieldStats(1, T0, T0),
    }
    assert source.window_stats("power", window(-60, 0)) == {}


def test_windows_outside_a_file_skip_it(plant_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = LineProtocolSource(str(plant_files / "**" / "*.lp*"))
    source.list_measurements()  # index every file once
    opened: list[str] = []
    read_points = files.read_points

    def spy(path: Path, **kwargs: object) -> Iterator[Point]:
        opened.append(path.name)
        return read_points(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "read_points", spy)
    assert batches_as_rows(
        list(source.stream_window(SeriesQuery("power", window(3000, 4000))))
    ) == {(("site", "east"),): [[T0 + 3600 * 1_000_000_000, 7.0, None, None, None]]}
    assert opened == ["late.lp"]
    # a changed file is indexed again
    late = plant_files / "late.lp"
    late.write_text(late.read_text() + f"power,site=east active=8 {T0 + 3601 * 1_000_000_000}\n")
    opened.clear()
    assert (
        len(
            batches_as_rows(list(source.stream_window(SeriesQuery("power", window(3000, 4000)))))[
                (("site", "east"),)
            ]
        )
        == 2
    )
    assert opened == ["late.lp", "late.lp"]  # once to index, once to read


def test_chunks_bound_memory_and_keep_series_sorted(tmp_path: Path) -> None:
    rnd = random.Random(7)
    times = list(range(25))
    rnd.shuffle(times)
    lines = []
    for t in times:
        # export style: one field per line, fields of a point far apart, plus a rewrite
        lines.append(f"m,s=a x={t} {T0 + t}")
        lines.append(f"m,s=b x={t} {T0 + t}")
    lines += [f"m,s=a y={t}i {T0 + t}" for t in times]
    lines.append(f"m,s=a x=100 {T0 + 3}")
    write(tmp_path / "shuffled.lp", "\n".join(lines) + "\n")
    source = LineProtocolSource(tmp_path / "shuffled.lp")
    batches = list(source.stream_window(SeriesQuery("m", window(0, 1)), chunk_size=10))
    assert all(len(b.rows) <= 10 for b in batches)
    for tags in ((("s", "a"),), (("s", "b"),)):
        mine = [b for b in batches if b.tags == tags]
        assert [len(b.rows) for b in mine] == [10, 10, 5]
        rows = [row for b in mine for row in b.rows]
        assert [row[0] for row in rows] == [T0 + t for t in range(25)]
    rows_a = batches_as_rows(batches)[(("s", "a"),)]
    assert rows_a[3] == [T0 + 3, 100.0, 3]
    assert rows_a[4] == [T0 + 4, 4.0, 4]
    assert source.window_stats("m", window(0, 1))["y"] == FieldStats(25, T0, T0 + 24)


def test_source_fails_on_malformed_files_unless_skipping(tmp_path: Path) -> None:
    write(tmp_path / "bad.lp", "m v=1 1\nm v=oops 2\nm v=3 3\n")
    with pytest.raises(LineProtocolError) as caught:
        LineProtocolSource(tmp_path / "bad.lp").list_measurements()
    assert (caught.value.path, caught.value.line_no) == (str(tmp_path / "bad.lp"), 2)
    source = LineProtocolSource(tmp_path / "bad.lp", on_error="skip")
    assert source.list_measurements() == ["m"]
    assert source.files()[0].stats.skipped_lines == 1
    rows = batches_as_rows(list(source.stream_window(SeriesQuery("m", EVERYTHING))))
    assert [row[0] for row in rows[()]] == [1, 3]


def test_source_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LineProtocolSource(tmp_path / "nope.lp").list_measurements()
    with pytest.raises(FileNotFoundError, match="no line protocol files match"):
        LineProtocolSource(str(tmp_path / "*.lp")).list_measurements()
    with pytest.raises(ValueError, match="unknown timestamp precision"):
        LineProtocolSource(tmp_path / "x.lp", precision="minutes")


def test_source_precision(tmp_path: Path) -> None:
    write(tmp_path / "s.lp", "m v=1 1700000000\n")
    source = LineProtocolSource(tmp_path / "s.lp", precision="s")
    assert batches_as_rows(list(source.stream_window(SeriesQuery("m", window(0, 1))))) == {
        (): [[T0, 1.0]]
    }


# -- a round trip through a real influxd ----------------------------------------------------------

TRICKY = """\
# DML
# CONTEXT-DATABASE:roundtrip
weather\\ station,site\\,name=north\\ yard,kind\\=x=a\\=b temp=21.5,hum=40i,ok=true,note="said \\"hi\\", then left" 1700000000000000000
weather\\ station,site\\,name=north\\ yard,kind\\=x=a\\=b temp=-1.5E-3,hum=-7i,ok=F,note="a=b c,d" 1700000000000000001
weather\\ station,site\\,name=south temp=1e3,path="C:\\\\dir\\\\",ok=TRUE -1000000000
wéather,站=東京 温度=12.25,mots="héllo wörld ✓" 1700000000000000003
keys,t=x f\\ k=1,f\\,k=2i,f\\=k=t,f\\"k="q",a"b=.5 1700000000000000004
keys,t=x f\\ k=5.,f\\,k=-0i 1700000000000000005
keys,t=y,u=z s="multi
line, with \\\\ backslash" 1700000000000000007
dupes,t=y v=1 1700000000000000000
dupes,t=y v=2 1700000000000000000
dupes,t=y w=3i 1700000000000000000
dupes,t=y w=4i,v=1.7976931348623157e+308 1700000000000000001
big v=9223372036854775807i,w=-9223372036854775808i,x=1e+21,y=5e-324 1700000000000000008
"""


def server_rows(
    influxd: LocalInfluxd, db: str
) -> dict[tuple[str, Tags], dict[int, dict[str, FieldValue]]]:
    """Every point the server stored, one measurement at a time (a field's type is per
    measurement), read as MessagePack so int64 and float types survive."""
    measurements = [row[0] for row in server_query(influxd, db, "SHOW MEASUREMENTS")[0]["values"]]
    rows: dict[tuple[str, Tags], dict[int, dict[str, FieldValue]]] = {}
    for measurement in measurements:
        assert '"' not in measurement and "\\" not in measurement  # no quoting needed
        for series in server_query(influxd, db, f'SELECT * FROM "{measurement}" GROUP BY *'):
            tags = tuple(sorted((k, v) for k, v in series.get("tags", {}).items() if v))
            columns = series["columns"]
            for values in series["values"]:
                fields = {
                    c: v for c, v in zip(columns[1:], values[1:], strict=True) if v is not None
                }
                rows.setdefault((series["name"], tags), {})[values[0]] = fields
    return rows


def server_query(influxd: LocalInfluxd, db: str, statement: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"q": statement, "db": db, "epoch": "ns"})
    request = urllib.request.Request(
        f"{influxd.url}/query?{query}", headers={"Accept": "application/x-msgpack"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result = msgpack.unpackb(response.read())["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def typed(rows: dict[tuple[str, Tags], dict[int, dict[str, FieldValue]]]) -> object:
    """Values with their Python type, so 1 == 1.0 == True cannot hide a wrong type."""
    return {
        series: {
            time_ns: {key: (type(value).__name__, value) for key, value in fields.items()}
            for time_ns, fields in points.items()
        }
        for series, points in rows.items()
    }


@pytest.mark.integration
def test_round_trip_against_influxd(influxd: LocalInfluxd, influx_db: str, tmp_path: Path) -> None:
    body = "\n".join(line for line in TRICKY.splitlines() if not line.startswith("#"))
    influxd.write_lines(influx_db, body)
    stored = server_rows(influxd, influx_db)

    path = write(tmp_path / "tricky.lp", TRICKY)
    source = LineProtocolSource(path)
    parsed: dict[tuple[str, Tags], dict[int, dict[str, FieldValue]]] = {}
    for measurement in source.list_measurements():
        for batch in source.stream_window(SeriesQuery(measurement, EVERYTHING), chunk_size=2):
            points = parsed.setdefault((measurement, batch.tags), {})
            for row in batch.rows:
                time_ns = row[0]
                assert isinstance(time_ns, int)
                points[time_ns] = {
                    c: v for c, v in zip(batch.columns, row[1:], strict=True) if v is not None
                }
    assert typed(parsed) == typed(stored)
    assert len(stored) == 7

    server_fields = sorted(
        (series["name"], key, influx_type)
        for series in server_query(influxd, influx_db, "SHOW FIELD KEYS")
        for key, influx_type in series["values"]
    )
    ours = sorted(
        (info.measurement, info.field, info.influx_type)
        for measurement in source.list_measurements()
        for info in source.list_field_keys(measurement)
    )
    assert ours == server_fields
