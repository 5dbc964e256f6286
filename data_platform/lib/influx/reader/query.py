"""What a read asks for: one measurement's window, optionally some fields and tag filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.timing.window import Window


@dataclass(frozen=True)
class SeriesQuery:
    """The points of `measurement` in `window` ([start, end)), for both readers.

    `fields` None reads every field; `tag_filters` keeps the series whose tags match (see
    `TagFilter`).
    """

    measurement: str
    window: Window
    fields: Sequence[str] | None = None
    tag_filters: Mapping[str, Sequence[str]] | TagFilter | None = None
    tag_filter: TagFilter | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag_filter", TagFilter.of(self.tag_filters))
