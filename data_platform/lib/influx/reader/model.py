"""The shapes that flow from an InfluxDB source to the warehouse writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

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
class ValueColumn:
    """One field's values in a series' rows, decoded into an array (no Python object per value).

    `values` is float64, int64 or bool (None: no row has a value); `valid` marks the rows that
    have one (None: all of them).
    """

    values: npt.NDArray[np.float64] | npt.NDArray[np.int64] | npt.NDArray[np.bool_] | None
    valid: npt.NDArray[np.bool_] | None = None

    def has_values(self) -> bool:
        return self.values is not None and (self.valid is None or bool(self.valid.any()))

    def as_floats(self) -> ValueColumn:
        """Whole numbers as floats (InfluxDB 3.x's msgpack and JSON write 2.0 as 2)."""
        if self.values is None or self.values.dtype != np.int64:
            return self
        return ValueColumn(self.values.astype(np.float64), self.valid)

    def tolist(self, rows: int) -> list[FieldValue]:
        """The values as a row decode gives them: Python numbers, None where a row has none."""
        if self.values is None:
            return [None] * rows
        values: list[FieldValue] = self.values.tolist()
        if self.valid is not None:
            for index in np.flatnonzero(~self.valid).tolist():
                values[index] = None
        return values


@dataclass(slots=True)
class SeriesColumns:
    """A `SeriesBatch` decoded into columns: `times` are the rows' epoch nanoseconds and
    `values[i]` the values of `columns[i]`. `batch()` gives the rows."""

    measurement: str
    tags: Tags
    columns: tuple[str, ...]
    times: npt.NDArray[np.int64]
    values: list[ValueColumn]

    def __len__(self) -> int:
        return len(self.times)

    def batch(self) -> SeriesBatch:
        return SeriesBatch(self.measurement, self.tags, self.columns, self.rows(0, len(self)))

    def rows(self, start: int, stop: int | None) -> list[list[FieldValue]]:
        """Rows `start` to `stop` (as slice bounds) as `batch()` gives them."""
        part = slice(start, stop)
        times = self.times[part]
        cut = [
            ValueColumn(
                None if v.values is None else v.values[part],
                None if v.valid is None else v.valid[part],
            )
            for v in self.values
        ]
        columns = [times.tolist(), *(v.tolist(len(times)) for v in cut)]
        return list(map(list, zip(*columns, strict=True)))

    def with_values(self) -> SeriesColumns:
        """Without the columns no row has a value of (see `SeriesBatch`)."""
        keep = [i for i, v in enumerate(self.values) if v.has_values()]
        if len(keep) == len(self.values):
            return self
        return SeriesColumns(
            self.measurement,
            self.tags,
            tuple(self.columns[i] for i in keep),
            self.times,
            [self.values[i] for i in keep],
        )


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
