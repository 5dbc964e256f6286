"""A half-open time window, the unit every run reads, replaces and checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from data_platform.lib.timing.buckets import ceil_to_bucket, floor_to_bucket

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: windows are always timezone-aware (UTC)")
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [start, end) in UTC."""

    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"

    @property
    def start_ns(self) -> int:
        return to_epoch_ns(self.start)

    @property
    def end_ns(self) -> int:
        return to_epoch_ns(self.end)

    def widened_to(self, width: timedelta) -> Window:
        """The smallest window of whole buckets of `width` that covers this one."""
        return Window(floor_to_bucket(self.start, width), ceil_to_bucket(self.end, width))

    def slices(self, step: timedelta) -> list[Window]:
        """Consecutive windows of at most `step` that cover this one."""
        out: list[Window] = []
        start = self.start
        while start < self.end:
            end = min(start + step, self.end)
            out.append(Window(start, end))
            start = end
        return out
