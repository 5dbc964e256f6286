"""Which series a measurement's `tags` filter keeps: one meaning for the server and the files.

InfluxDB compares a tag a series lacks as the empty string: `"site" = 'north'` leaves out a
series without `site`, `"site" = ''` keeps exactly the series without it. `TagFilter.matches`
says the same in Python (files, the registry), and `influxql.tag_condition` writes the same
filter as InfluxQL, so both readers and the component agree on every series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from data_platform.lib.influx.reader.model import Tags


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Per tag key, the values a series may have (all keys must match); `""` means lacking it."""

    wanted: tuple[tuple[str, frozenset[str]], ...]
    """(key, values) sorted by key."""

    @classmethod
    def of(cls, tag_filters: Mapping[str, Sequence[str]] | TagFilter | None) -> TagFilter | None:
        """The filter of a `tags:` mapping (key -> list of values); None keeps every series."""
        if tag_filters is None or isinstance(tag_filters, TagFilter):
            return tag_filters
        if not tag_filters:
            return None
        wanted = []
        for key, values in sorted(tag_filters.items()):
            if isinstance(values, str):
                raise ValueError(
                    f"tag filter {key!r}: give a list of values, not the string {values!r}"
                )
            if not values:
                raise ValueError(f"tag filter {key!r} has no values; leave the key out to read all")
            wanted.append((key, frozenset(values)))
        return cls(tuple(wanted))

    def values(self, key: str) -> list[str]:
        """The values wanted for `key`, sorted (for stable query text)."""
        return sorted(dict(self.wanted)[key])

    def matches(self, tags: Tags) -> bool:
        present = dict(tags)
        return all(present.get(key, "") in values for key, values in self.wanted)
