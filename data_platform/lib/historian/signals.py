"""Signals: one (measurement, tag set, field) of a source, and its row in the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass

from data_platform.lib.influx.reader.model import Tags


@dataclass(frozen=True, slots=True)
class Signal:
    """One (measurement, tag set, field): a time series of values in the warehouse."""

    source: str
    measurement: str
    tags: Tags
    field: str

    @property
    def key(self) -> str:
        """Canonical, unambiguous text of the signal identity (the registry's unique key)."""
        return json.dumps(
            [self.source, self.measurement, [list(t) for t in self.tags], self.field],
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @property
    def series_key(self) -> str:
        """The series in line-protocol form, e.g. `power,site=north,device=inv\\ 1`."""
        parts = [_escape_lp(self.measurement, ", ")]
        parts.extend(f"{_escape_lp(k, ',= ')}={_escape_lp(v, ',= ')}" for k, v in self.tags)
        return ",".join(parts)

    def default_name(self) -> str:
        """`<source>/<series key>.<field>`: unique for every source, series and field."""
        return f"{self.source}/{self.series_key}.{_escape_lp(self.field, '.')}"


def _escape_lp(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for ch in specials:
        text = text.replace(ch, "\\" + ch)
    return text


@dataclass(frozen=True, slots=True)
class RegisteredSignal:
    """A signal with the id and name the registry gave it."""

    tag_id: int
    tag_name: str
    signal: Signal
