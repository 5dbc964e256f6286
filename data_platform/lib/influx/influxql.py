"""InfluxQL text: the one place that escapes identifiers and literals and builds statements.

Every name or value that reaches a query goes through `quote_ident` or `quote_literal`;
nothing else in the package formats InfluxQL by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from data_platform.lib.influx.model import Tags, Window, normalize_tags

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


def tag_condition(tag_filters: Mapping[str, Sequence[str]] | None) -> str:
    """`AND ("k" = 'a' OR "k" = 'b') AND ...`, or an empty string without filters."""
    if not tag_filters:
        return ""
    clauses = []
    for key, values in sorted(tag_filters.items()):
        if isinstance(values, str):
            raise ValueError(
                f"tag filter {key!r}: give a list of values, not the string {values!r}"
            )
        if not values:
            raise ValueError(f"tag filter {key!r} has no values; leave the key out to read all")
        ident = quote_ident(key)
        alternatives = " OR ".join(f"{ident} = {quote_literal(v)}" for v in dict.fromkeys(values))
        clauses.append(f" AND ({alternatives})")
    return "".join(clauses)


def select_window(
    source: str,
    window: Window,
    *,
    fields: Sequence[str] | None = None,
    tag_filters: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The statement that reads one window, one series per tag set."""
    if fields is None:
        selection = "*"
    else:
        if isinstance(fields, str):
            raise ValueError(f"fields: give a list of field names, not the string {fields!r}")
        if not fields:
            raise ValueError("fields is empty; pass None to read every field")
        selection = ", ".join(quote_ident(f) for f in dict.fromkeys(fields))
    return (
        f"SELECT {selection} FROM {source} WHERE {time_condition(window)}"
        f"{tag_condition(tag_filters)} GROUP BY *"
    )


def count_window(
    source: str, window: Window, tag_filters: Mapping[str, Sequence[str]] | None = None
) -> str:
    return (
        f"SELECT count(*) FROM {source} WHERE {time_condition(window)}{tag_condition(tag_filters)}"
    )


def selector_window(
    selector: Literal["first", "last"], field: str, source: str, window: Window
) -> str:
    """`SELECT first("f") ...`: a single selector keeps the point's own timestamp."""
    return f"SELECT {selector}({quote_ident(field)}) FROM {source} WHERE {time_condition(window)}"


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
