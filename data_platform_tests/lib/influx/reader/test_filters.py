"""One meaning of a `tags:` filter: the server (InfluxQL), the files and the component agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_platform.lib.historian.signals import Signal
from data_platform.lib.influx.plan import MeasurementSelection
from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.influxql import tag_condition
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.source import LineProtocolSource
from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.lib.influx.reader.support import EVERYTHING, T0_NS, client_for

pytestmark = pytest.mark.integration

# A series with both tags, one without `dev`, one with neither, and values with quotes.
LINES = "\n".join(
    [
        f"m,site=a,dev=x v=1 {T0_NS}",
        f"m,site=b v=2 {T0_NS + 1}",
        f"m v=3 {T0_NS + 2}",
        f"m,site=it's v=4 {T0_NS + 3}",
        f'm,site=say\\ "hi" v=5 {T0_NS + 4}',
    ]
)
FILTERS: list[dict[str, list[str]]] = [
    {"dev": ["x"]},  # a series without `dev` does not match a non-empty value
    {"dev": [""]},  # ... and matches the empty one
    {"dev": ["", "x"]},
    {"site": ["it's"]},
    {"site": ['say "hi"', "b"]},
    {"site": ["a", "b"], "dev": [""]},
    {"site": ["' OR ''='"]},
]


def series(batches: list) -> list[tuple[tuple[str, str], ...]]:
    return sorted(b.tags for b in batches)


@pytest.mark.parametrize("tags", FILTERS, ids=[str(f) for f in FILTERS])
def test_both_readers_and_the_component_keep_the_same_series(
    influxd: LocalInfluxd, influx_db: str, tmp_path: Path, tags: dict[str, list[str]]
) -> None:
    influxd.write_lines(influx_db, LINES)
    (tmp_path / "m.lp").write_text(LINES + "\n", encoding="utf-8")
    files = LineProtocolSource(str(tmp_path / "m.lp"))
    with client_for(influxd.url, influx_db, format="msgpack") as client:
        from_server = series(
            list(client.stream_window(SeriesQuery("m", EVERYTHING, tag_filters=tags)))
        )
        listed = client.list_series("m")
    assert listed is not None
    every_series = listed
    from_files = series(list(files.stream_window(SeriesQuery("m", EVERYTHING, tag_filters=tags))))
    assert from_files == from_server
    assert sorted(files.list_series("m")) == sorted(every_series)
    tag_filter = TagFilter.of(tags)
    assert tag_filter is not None
    assert sorted(t for t in every_series if tag_filter.matches(t)) == from_server
    selection = MeasurementSelection("m", "m", tags={k: tuple(v) for k, v in tags.items()})
    kept = sorted(t for t in every_series if selection.keeps(Signal("s", "m", t, "v")))
    assert kept == from_server


def test_what_the_server_keeps() -> None:
    """The InfluxDB meaning, spelled out: a missing tag is the empty value."""
    no_dev = (("site", "b"),)
    both = (("dev", "x"), ("site", "a"))
    wants_x = TagFilter.of({"dev": ["x"]})
    wants_none = TagFilter.of({"dev": [""]})
    assert wants_x is not None and wants_none is not None
    assert wants_x.matches(both) and not wants_x.matches(no_dev) and not wants_x.matches(())
    assert wants_none.matches(no_dev) and wants_none.matches(()) and not wants_none.matches(both)
    assert TagFilter.of({}) is None and TagFilter.of(None) is None
    assert TagFilter.of(wants_x) is wants_x
    assert tag_condition(wants_none) == " AND (\"dev\" = '')"
    assert tag_condition({"site": ["it's"]}) == " AND (\"site\" = 'it\\'s')"
    with pytest.raises(ValueError, match="give a list of values"):
        TagFilter.of({"site": "north"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="no values"):
        TagFilter.of({"site": []})
