"""Partition starts: one grammar for both components, UTC, aligned where rollups need it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from data_platform.lib.timing.errors import SettingError
from data_platform.lib.timing.partitions import (
    Partitions,
    PartitionsSpec,
    parse_granularity,
    parse_start,
)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01 06:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01T06:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01-06:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01 06:00:30", datetime(2024, 1, 1, 6, 0, 30, tzinfo=UTC)),
        ("2024-01-01T06:00:30", datetime(2024, 1, 1, 6, 0, 30, tzinfo=UTC)),
        ("2024-01-01T00:00:00+00:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T06:00:00Z", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01T08:00:00+02:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
    ],
)
def test_start_forms(text: str, moment: datetime) -> None:
    parsed = parse_start(text)
    assert parsed == moment and parsed.tzinfo is UTC


def test_start_refusals() -> None:
    with pytest.raises(SettingError, match="'YYYY-MM-DD'"):
        parse_start("01/02/2024")
    with pytest.raises(SettingError, match="pick a past date"):
        parse_start("2999-01-01")
    with pytest.raises(SettingError, match="does not start a hourly partition"):
        parse_start("2024-01-01T00:30:00", aligned_to="hourly")
    assert parse_start("2024-01-01T00:30:00") == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    with pytest.raises(SettingError, match="'15min', 'hourly' or 'daily'"):
        parse_granularity("weekly")


def test_partitions_definition() -> None:
    spec = PartitionsSpec(start="2024-01-01T01:00:00+01:00", granularity="daily")
    parsed = spec.parsed(aligned=True)
    assert parsed == Partitions(datetime(2024, 1, 1, tzinfo=UTC), "daily")
    definition = parsed.definition()
    assert definition.cron_schedule == "0 0 * * *"
    assert definition.get_first_partition_key() == "2024-01-01"
