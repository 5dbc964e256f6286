"""InfluxQL text: the one place that escapes identifiers and literals and builds statements.

Every name or value that reaches a query goes through `quote_ident` or `quote_literal`;
nothing else in the package formats InfluxQL by hand.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.model import Tags, normalize_tags
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.timing.window import Window

# InfluxQL's scanner understands these escapes inside quoted strings and identifiers.
_IDENT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_LITERAL_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})


def quote_ident(name: str) -> str:
    """`name` as a double-quoted InfluxQL identifier."""
    return f'"{name.translate(_IDENT_ESCAPES)}"'


def quote_literal(value: str) -> str:
    """`value` as a single-quoted InfluxQL string literal."""
    return f"'{value.translate(_LITERAL_ESCAPES)}'"


def qualified_measurement(measurement: str, database: str, retention_policy: str | None) -> str:
    """`"db"."rp"."m"` when a retention policy is set, else `"m"` (the request names the db)."""
    if retention_policy:
        return ".".join(quote_ident(part) for part in (database, retention_policy, measurement))
    return quote_ident(measurement)


def time_condition(window: Window) -> str:
    return f"time >= {window.start_ns}ns AND time < {window.end_ns}ns"


def tag_condition(tag_filters: Mapping[str, Sequence[str]] | TagFilter | None) -> str:
    """`AND ("k" = 'a' OR "k" = 'b') AND ...`, or an empty string without filters.

    The InfluxQL spelling of `TagFilter.matches`: InfluxDB compares a missing tag as `''`.
    """
    tag_filter = TagFilter.of(tag_filters)
    if tag_filter is None:
        return ""
    clauses = []
    for key, _ in tag_filter.wanted:
        ident = quote_ident(key)
        alternatives = " OR ".join(f"{ident} = {quote_literal(v)}" for v in tag_filter.values(key))
        clauses.append(f" AND ({alternatives})")
    return "".join(clauses)


FieldTypes = Mapping[str, Collection[str]]
"""Field name -> its InfluxDB types (several when shards disagree), as SHOW FIELD KEYS lists."""


def several_types(field_types: FieldTypes | None) -> list[str]:
    """The fields that have more than one type, sorted."""
    return sorted(name for name, found in (field_types or {}).items() if len(found) > 1)


def _typed(field: str, field_types: FieldTypes) -> list[str]:
    """`field` once per type, cast and aliased back to its name, when it has several.

    A plain reference to a field whose type differs between shards returns the values of one
    type only (InfluxDB 1.x picks float, then integer, string, boolean); a cast per type reads
    them all, in columns of the same name.
    """
    ident = quote_ident(field)
    found = sorted(field_types.get(field, ()))
    if len(found) < 2:
        return [ident]
    return [f"{ident}::{kind} AS {ident}" for kind in found]


def select_window(
    source: str,
    window: Window,
    *,
    fields: Sequence[str] | None = None,
    tag_filters: Mapping[str, Sequence[str]] | TagFilter | None = None,
    field_types: FieldTypes | None = None,
) -> str:
    """The statement that reads one window, one series per tag set.

    With `field_types`, a field with several types is read once per type (see `_typed`);
    the columns of one name then hold the field's values, each row in one of them.
    """
    if fields is not None:
        if isinstance(fields, str):
            raise ValueError(f"fields: give a list of field names, not the string {fields!r}")
        if not fields:
            raise ValueError("fields is empty; pass None to read every field")
    types = field_types or {}
    names = list(dict.fromkeys(fields)) if fields is not None else sorted(types)
    if fields is None and not any(len(types.get(f, ())) > 1 for f in names):
        selection = "*"
    else:
        selection = ", ".join(part for f in names for part in _typed(f, types))
    return (
        f"SELECT {selection} FROM {source} WHERE {time_condition(window)}"
        f"{tag_condition(tag_filters)} GROUP BY *"
    )


def count_window(
    source: str,
    window: Window,
    tag_filters: Mapping[str, Sequence[str]] | TagFilter | None = None,
    field_types: FieldTypes | None = None,
) -> str:
    """Values per field in the window, in columns `count_<field>`; a field with several types
    (`field_types`) is counted once per type, in columns of the same name (sum them)."""
    types = field_types or {}
    if several_types(types):
        selection = ", ".join(
            f"count({ref}) AS {quote_ident(f'count_{field}')}"
            for field in sorted(types)
            for ref in (
                [f"{quote_ident(field)}::{kind}" for kind in sorted(types[field])]
                if len(types[field]) > 1
                else [quote_ident(field)]
            )
        )
    else:
        selection = "count(*)"
    return (
        f"SELECT {selection} FROM {source} WHERE {time_condition(window)}"
        f"{tag_condition(tag_filters)}"
    )


def selector_window(
    selector: Literal["first", "last"],
    field: str,
    source: str,
    window: Window,
    influx_type: str | None = None,
) -> str:
    """`SELECT first("f") ...`: a single selector keeps the point's own timestamp.

    `influx_type` casts the field (`"f"::string`) to look at the values of that type only.
    """
    ref = quote_ident(field) if influx_type is None else f"{quote_ident(field)}::{influx_type}"
    return f"SELECT {selector}({ref}) FROM {source} WHERE {time_condition(window)}"


def last_per_series(source: str, query: SeriesQuery) -> str:
    """One row per series with a point in the window: `last_<field>` is null for the fields
    the series has no value of there."""
    return (
        f"SELECT last(*) FROM {source} WHERE {time_condition(query.window)}"
        f"{tag_condition(query.tag_filter)} GROUP BY *"
    )


def newest_point(source: str) -> str:
    """The measurement's newest point: one point per series read, whatever the history."""
    return f"SELECT * FROM {source} ORDER BY time DESC LIMIT 1"


# -- line-protocol keys (SHOW SERIES and the CSV `tags` column) -----------------------------------
# InfluxDB escapes only these characters with a backslash; `\\` on its own is not an escape.
_TAG_SPECIALS = frozenset(",= ")
_MEASUREMENT_SPECIALS = frozenset(", ")


def _split_escaped(
    text: str, separator: str, specials: frozenset[str], limit: int = -1
) -> list[str]:
    """Split at unescaped `separator`s (at most `limit` times), keeping the escapes."""
    parts: list[str] = []
    start = i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "\\" and i + 1 < length and text[i + 1] in specials:
            i += 2
            continue
        if char == separator and limit != 0:
            parts.append(text[start:i])
            start = i + 1
            limit -= 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str, specials: frozenset[str]) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "\\" and i + 1 < length and text[i + 1] in specials:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def parse_tag_set(text: str) -> dict[str, str]:
    """`k1=v1,k2=v\\,2` (line-protocol escaping) as a dict."""
    tags: dict[str, str] = {}
    if not text:
        return tags
    for pair in _split_escaped(text, ",", _TAG_SPECIALS):
        key, value = [*_split_escaped(pair, "=", _TAG_SPECIALS, limit=1), ""][:2]
        tags[_unescape(key, _TAG_SPECIALS)] = _unescape(value, _TAG_SPECIALS)
    return tags


def parse_series_key(key: str) -> tuple[str, Tags]:
    """A series key from `SHOW SERIES` (`cpu,host=a,region=eu`) as (measurement, tags)."""
    measurement, *rest = _split_escaped(key, ",", _MEASUREMENT_SPECIALS, limit=1)
    tags = parse_tag_set(rest[0]) if rest else {}
    return _unescape(measurement, _MEASUREMENT_SPECIALS), normalize_tags(tags)
