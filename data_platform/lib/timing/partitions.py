"""Time partitions of both components: the YAML block, its parsed form, Dagster's definition.

A start is a date (`2024-01-01`), a date and time (`2024-01-01 06:00`, `2024-01-01T06:00`,
`2024-01-01-06:00`, optionally with seconds) in UTC, or an ISO 8601 timestamp with an offset
(`2024-01-01T06:00:00+02:00`, `...Z`), converted to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, cast

import dagster as dg
from pydantic import Field

from data_platform.lib.timing.errors import SettingError, YamlPath

Granularity = Literal["15min", "hourly", "daily"]
GRANULARITY_WIDTH: dict[str, timedelta] = {
    "15min": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
}
GRANULARITY_CRON: dict[str, str] = {
    "15min": "*/15 * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
}
GRANULARITY_FORMAT: dict[str, str] = {
    "15min": "%Y-%m-%d-%H:%M",
    "hourly": "%Y-%m-%d-%H:%M",
    "daily": "%Y-%m-%d",
}
_NAIVE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d-%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d-%H:%M:%S",
)


def parse_granularity(value: str, path: YamlPath = ("partitions", "granularity")) -> Granularity:
    if value not in GRANULARITY_WIDTH:
        raise SettingError(
            path,
            f"granularity {value!r} is not one of 15min, hourly, daily",
            "use 15min, hourly or daily (write '15min', 'hourly' or 'daily'); a rollup family "
            "uses its ingest component's partitions.granularity",
        )
    return cast(Granularity, value)


def parse_start(
    value: str | date,
    path: YamlPath = ("partitions", "start"),
    *,
    aligned_to: Granularity | None = None,
) -> datetime:
    """A past moment in UTC; with `aligned_to`, it must also start a partition of that width."""
    moment = _moment(value, path)
    if moment > datetime.now(UTC):
        raise SettingError(path, f"{value!r} is in the future", "pick a past date")
    if aligned_to is not None:
        require_aligned(moment, aligned_to, path, value)
    return moment


def require_aligned(
    moment: datetime, granularity: Granularity, path: YamlPath, shown: object
) -> None:
    """Refuse a start that is not on a partition boundary (rollup buckets need one)."""
    since_midnight = moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if since_midnight % GRANULARITY_WIDTH[granularity]:
        raise SettingError(
            path,
            f"{shown!r} does not start a {granularity} partition",
            f"use a start on a {granularity} boundary in UTC (e.g. '{moment.date()}')",
        )


def _moment(value: str | date, path: YamlPath) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        moment = None
        for fmt in _NAIVE_FORMATS:
            try:
                moment = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if moment is None:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise SettingError(
                    path,
                    f"{value!r} is not an ISO date or date-time",
                    "write 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM' (UTC), or an ISO 8601 timestamp "
                    "with its offset like '2024-01-01T00:00:00+00:00'; a rollup family uses "
                    "its ingest component's partitions.start",
                ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Partitions:
    """Time partitions: each partition is one window, replaced (or refreshed) as a whole."""

    start: datetime
    granularity: Granularity
    end_offset: int = 0

    @property
    def width(self) -> timedelta:
        return GRANULARITY_WIDTH[self.granularity]

    @property
    def cron(self) -> str:
        return GRANULARITY_CRON[self.granularity]

    def definition(self) -> dg.TimeWindowPartitionsDefinition:
        return dg.TimeWindowPartitionsDefinition(
            start=self.start,
            cron_schedule=self.cron,
            fmt=GRANULARITY_FORMAT[self.granularity],
            timezone="UTC",
            end_offset=self.end_offset,
        )


class PartitionsSpec(dg.Resolvable, dg.Model):
    """Time partitions; a rollup family's must be its ingest components' (start, granularity)."""

    start: str = Field(
        description="First partition: 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM' (UTC) or an ISO 8601 "
        "timestamp with offset. Rollups: the ingest component's partitions.start.",
        examples=["2024-01-01", "2024-01-01T00:00:00+00:00"],
    )
    granularity: str = Field(
        default="hourly",
        description="Window width: `15min`, `hourly` or `daily`. Rollups: the ingest "
        "component's, so every rollup partition maps to one ingest partition.",
        examples=["hourly"],
        json_schema_extra={"enum": list(GRANULARITY_WIDTH)},
    )

    def parsed(self, path: YamlPath = ("partitions",), *, aligned: bool = False) -> Partitions:
        granularity = parse_granularity(self.granularity, (*path, "granularity"))
        start = parse_start(
            self.start, (*path, "start"), aligned_to=granularity if aligned else None
        )
        return Partitions(start=start, granularity=granularity)
