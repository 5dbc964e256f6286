"""The shapes that flow from an InfluxDB source to the warehouse writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

FieldValue = float | int | bool | str | None

Tags = tuple[tuple[str, str], ...]
"""A series' tag set: (key, value) pairs sorted by key, empty values left out."""


@dataclass(slots=True)
class SeriesBatch:
    """Points of one series (measurement + tag set), as InfluxDB returns them.

    `columns` are the field names; each row of `rows` is `[time_ns, value_1, value_2, ...]`
    aligned with `columns`, `None` where a point has no value for that field.
    """

    measurement: str
    tags: Tags
    columns: tuple[str, ...]
    rows: list[list[FieldValue]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """A field of a measurement and its InfluxDB type (float, integer, unsigned, boolean, string)."""

    measurement: str
    field: str
    influx_type: str


@dataclass(frozen=True, slots=True)
class FieldStats:
    """How many values a field has in a window, and the times of its first and last one."""

    count: int
    first_ns: int | None
    last_ns: int | None


class SeriesFields(NamedTuple):
    """A series (its tag set) and the fields it has values of."""

    tags: Tags
    fields: tuple[str, ...]


def normalize_tags(tags: dict[str, str] | None) -> Tags:
    if not tags:
        return ()
    return tuple(sorted((k, v) for k, v in tags.items() if v not in (None, "")))
