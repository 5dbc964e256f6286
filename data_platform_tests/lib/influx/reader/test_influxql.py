"""InfluxQL text: quoting, statements, series keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from data_platform.lib.influx.reader.influxql import (
    parse_series_key,
    qualified_measurement,
    quote_ident,
    quote_literal,
    select_window,
)
from data_platform.lib.timing.window import Window
from data_platform_tests.lib.influx.reader.support import SECOND, T0, T0_NS


def test_quoting() -> None:
    assert quote_ident('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    assert quote_literal("it's \\ x\ny") == "'it\\'s \\\\ x\\ny'"
    assert qualified_measurement("m", "db", None) == '"m"'
    assert qualified_measurement("m", 'd"b', "r p") == '"d\\"b"."r p"."m"'
    window = Window(T0, T0 + timedelta(seconds=1))
    assert select_window('"m"', window, fields=["a", "a", "b"], tag_filters={"h": ["x", "y"]}) == (
        f'SELECT "a", "b" FROM "m" WHERE time >= {T0_NS}ns AND time < {T0_NS + SECOND}ns '
        "AND (\"h\" = 'x' OR \"h\" = 'y') GROUP BY *"
    )
    with pytest.raises(ValueError, match="empty"):
        select_window('"m"', window, fields=[])
    with pytest.raises(ValueError, match="no values"):
        select_window('"m"', window, tag_filters={"h": []})


def test_parse_series_key() -> None:
    assert parse_series_key(r"cpu\ 1\,x,host=a\ b,region=e\=u\,w,empty=") == (
        "cpu 1,x",
        (("host", "a b"), ("region", "e=u,w")),
    )
    assert parse_series_key("solo") == ("solo", ())
    assert parse_series_key(r"m,k=a\b") == ("m", (("k", r"a\b"),))
