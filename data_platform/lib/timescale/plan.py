"""The rollup family a YAML block describes, validated: buckets, their hierarchy and policies.

Nothing here touches a database: plans are built when definitions load (also in CI).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from data_platform.lib.timing.buckets import is_multiple
from data_platform.lib.timing.durations import format_interval
from data_platform.lib.timing.errors import SettingError, YamlPath, yaml_path_text
from data_platform.lib.timing.partitions import Partitions

AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "count", "sum", "first", "last")
"""Every aggregate a rollup can store, in column order."""

OnDefinitionChange = Literal["rebuild", "fail"]
BUCKET_COLUMN = "bucket"
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated


class RollupConfigError(SettingError):
    """A rollup YAML setting is invalid; the message names the field, the problem and the fix."""


@dataclass(frozen=True, slots=True)
class SourceTable:
    """The raw table the narrowest rollup reads."""

    schema: str
    table: str
    time_column: str
    signal_column: str
    value_column: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """TimescaleDB `add_continuous_aggregate_policy` settings."""

    start_offset: timedelta
    end_offset: timedelta
    schedule_interval: timedelta
    path: YamlPath = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class ColumnstorePolicy:
    """Columnstore (compression) settings and the age after which chunks are converted."""

    after: timedelta
    segmentby: tuple[str, ...]
    orderby: tuple[tuple[str, str], ...]
    """(column, "ASC" | "DESC") pairs."""

    @property
    def segmentby_text(self) -> str:
        return ", ".join(self.segmentby)

    @property
    def orderby_text(self) -> str:
        return ", ".join(f"{column} {direction}" for column, direction in self.orderby)


@dataclass(frozen=True, slots=True)
class Rollup:
    """One bucket width: a continuous aggregate (TimescaleDB) or a rollup table (PostgreSQL)."""

    name: str
    """View or table name in the target schema: `<name_prefix>_<suffix>`."""
    suffix: str
    width: timedelta
    base: Rollup | None
    """The narrower rollup this one is built from; None when it reads the source table."""
    columns: tuple[str, ...]
    """The aggregate columns stored, a subset of AGGREGATES in that order."""
    refresh: RefreshPolicy | None
    drop_after: timedelta | None
    index: int
    """Position in the YAML `buckets` list."""
    drop_after_path: YamlPath = ()

    @property
    def width_text(self) -> str:
        return format_interval(self.width)

    @property
    def hierarchical(self) -> bool:
        return self.base is not None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class RollupPlan:
    """Everything the runtime needs to build, refresh and check one family of rollups."""

    source: SourceTable
    target_schema: str
    rollups: tuple[Rollup, ...]
    """Narrowest first: every rollup comes after its base."""
    materialized_only: bool
    columnstore: ColumnstorePolicy | None
    raw_drop_after: timedelta | None
    partitions: Partitions
    on_definition_change: OnDefinitionChange
    freshness_max_lag: timedelta

    @property
    def partition_width(self) -> timedelta:
        return self.partitions.width

    def by_name(self, name: str) -> Rollup:
        return next(r for r in self.rollups if r.name == name)

    def descendants(self, rollup: Rollup) -> list[Rollup]:
        """Rollups built (directly or through others) from `rollup`, narrowest first."""
        out: list[Rollup] = []
        for candidate in self.rollups:
            base = candidate.base
            while base is not None:
                if base.name == rollup.name:
                    out.append(candidate)
                    break
                base = base.base
        return out

    def input_retention(self, rollup: Rollup) -> timedelta | None:
        """How long the data a rollup reads is kept (None: forever)."""
        return rollup.base.drop_after if rollup.base is not None else self.raw_drop_after


def definition_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


# -- building a plan from YAML values -----------------------------------------------------------


def check_identifier(path: YamlPath, value: str, what: str) -> str:
    if not value or not value.strip():
        raise RollupConfigError(path, f"{what} is empty", f"set {yaml_path_text(path)}")
    if len(value.encode()) > MAX_IDENTIFIER:
        raise RollupConfigError(
            path,
            f"{what} {value!r} is longer than PostgreSQL's {MAX_IDENTIFIER}-byte identifier limit",
            "use a shorter name",
        )
    if "\x00" in value:
        raise RollupConfigError(path, f"{what} contains a NUL byte", "remove it")
    return value


def resolve_aggregates(path: YamlPath, names: Sequence[str]) -> tuple[tuple[str, ...], set[str]]:
    """(stored columns in canonical order, aggregates the user asked for).

    `count` is always stored (checks compare it with the source, and a wider bucket's average is
    sum / count); `sum` is stored whenever `avg` is.
    """
    if not names:
        raise RollupConfigError(
            path, "no aggregates selected", f"list some of {', '.join(AGGREGATES)} or leave it out"
        )
    requested: set[str] = set()
    for index, name in enumerate(names):
        normalized = str(name).strip().lower()
        if normalized not in AGGREGATES:
            raise RollupConfigError(
                (*path, index),
                f"unknown aggregate {name!r}",
                f"use a subset of {', '.join(AGGREGATES)}",
            )
        requested.add(normalized)
    stored = set(requested) | {"count"}
    if "avg" in requested:
        stored.add("sum")
    return tuple(a for a in AGGREGATES if a in stored), requested


@dataclass(frozen=True, slots=True)
class BucketInput:
    """A `buckets` entry after interval parsing, before the hierarchy is known."""

    index: int
    width: timedelta
    suffix: str
    refresh: RefreshPolicy | None
    drop_after: timedelta | None
    drop_after_path: YamlPath = ()


def build_hierarchy(
    name_prefix: str,
    buckets: Sequence[BucketInput],
    columns: tuple[str, ...],
) -> tuple[Rollup, ...]:
    """Order buckets narrowest first and give each wider one the nearest narrower divisor."""
    if not buckets:
        raise RollupConfigError(
            ("buckets",), "no buckets", "list at least one, e.g. `- width: 1 minute`"
        )
    seen_width: dict[timedelta, int] = {}
    seen_suffix: dict[str, int] = {}
    for bucket in buckets:
        if bucket.width in seen_width:
            raise RollupConfigError(
                ("buckets", bucket.index, "width"),
                f"width {format_interval(bucket.width)} repeats buckets[{seen_width[bucket.width]}]",
                "list every width once",
            )
        seen_width[bucket.width] = bucket.index
        if bucket.suffix in seen_suffix:
            raise RollupConfigError(
                ("buckets", bucket.index, "name"),
                f"name {bucket.suffix!r} repeats buckets[{seen_suffix[bucket.suffix]}]",
                "give every bucket its own name",
            )
        seen_suffix[bucket.suffix] = bucket.index

    built: list[Rollup] = []
    for bucket in sorted(buckets, key=lambda b: b.width):
        base: Rollup | None = None
        if built:
            divisors = [r for r in built if is_multiple(bucket.width, r.width)]
            if not divisors:
                narrower = ", ".join(r.width_text for r in built)
                raise RollupConfigError(
                    ("buckets", bucket.index, "width"),
                    f"{format_interval(bucket.width)} is not a multiple of any narrower bucket "
                    f"({narrower}); a wider bucket is built from a narrower one that divides it",
                    f"make it a multiple of {built[-1].width_text} "
                    f"(e.g. {format_interval(built[-1].width * 2)}) or add a bucket that divides it",
                )
            base = divisors[-1]
        name = f"{name_prefix}_{bucket.suffix}"
        check_identifier(("target", "name_prefix"), name, "rollup name")
        built.append(
            Rollup(
                name=name,
                suffix=bucket.suffix,
                width=bucket.width,
                base=base,
                columns=columns,
                refresh=bucket.refresh,
                drop_after=bucket.drop_after,
                index=bucket.index,
                drop_after_path=bucket.drop_after_path,
            )
        )
    return tuple(built)


def check_policies(plan: RollupPlan) -> None:
    """Cross-field rules TimescaleDB enforces (or that would silently lose data)."""
    for rollup in plan.rollups:
        refresh = rollup.refresh
        if refresh is not None:
            window = refresh.start_offset - refresh.end_offset
            needed = refresh.end_offset + 2 * rollup.width
            if refresh.start_offset < needed:
                raise RollupConfigError(
                    (*refresh.path, "start_offset"),
                    f"the refresh window of {rollup.name} ({format_interval(window)} between "
                    f"start_offset and end_offset) covers less than two {rollup.width_text} "
                    "buckets, which TimescaleDB rejects",
                    f"set start_offset to at least {format_interval(needed)} (end_offset + 2 x "
                    f"{rollup.width_text}), or give this bucket its own `buckets[{rollup.index}]"
                    ".refresh`",
                )
            input_kept = plan.input_retention(rollup)
            if input_kept is not None and input_kept < refresh.start_offset:
                field_path: YamlPath = (
                    ("retention", "raw_drop_after")
                    if rollup.base is None
                    else rollup.base.drop_after_path
                )
                source = str(plan.source) if rollup.base is None else rollup.base.name
                raise RollupConfigError(
                    field_path,
                    f"{source} keeps {format_interval(input_kept)} of data but {rollup.name} "
                    f"refreshes the last {format_interval(refresh.start_offset)} from it; a "
                    "refresh would delete rollup rows whose input is gone",
                    f"keep the input at least {format_interval(refresh.start_offset)} or lower "
                    f"the refresh start_offset of {rollup.name}",
                )
        if (
            rollup.drop_after is not None
            and refresh is not None
            and rollup.drop_after < refresh.start_offset
        ):
            raise RollupConfigError(
                rollup.drop_after_path,
                f"{rollup.name} drops rows after {format_interval(rollup.drop_after)} but its "
                f"refresh policy re-materializes the last {format_interval(refresh.start_offset)}",
                "make drop_after at least the refresh start_offset",
            )
        # A Dagster refresh of a partition older than the raw retention would replace rollup
        # rows with nothing on PostgreSQL; the runtime skips such windows, but keeping less
        # than one partition makes every refresh useless.
        if (
            plan.raw_drop_after is not None
            and rollup.base is None
            and plan.raw_drop_after < plan.partition_width
        ):
            raise RollupConfigError(
                ("retention", "raw_drop_after"),
                f"raw data is kept {format_interval(plan.raw_drop_after)}, less than one "
                f"{plan.partitions.granularity} partition",
                f"keep at least {format_interval(plan.partition_width)}",
            )
