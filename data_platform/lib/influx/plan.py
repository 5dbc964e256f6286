"""The ingest a YAML file describes, validated once at load: typed, frozen, without secrets.

Runs and checks work from an `IngestPlan`, never from the YAML's strings. Nothing here reads
the environment or contacts a server: secrets are named here and read when a run opens its
reader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, cast

from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables
from data_platform.lib.influx import specs
from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.reader.settings import InfluxSettings
from data_platform.lib.timing.durations import format_interval, parse_duration
from data_platform.lib.timing.errors import SettingError
from data_platform.lib.timing.partitions import Partitions
from data_platform.lib.timing.window import Window

SourceKind = Literal["influx", "files"]
OnCollision = Literal["fail", "keep_first"]
ALL_MEASUREMENTS = "*"

_SLUG = re.compile(r"[^a-z0-9_]+")


def slugify(text: str) -> str:
    slug = _SLUG.sub("_", text.lower()).strip("_")
    return slug if slug and not slug[0].isdigit() else f"m_{slug}"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How to reach an InfluxDB server: the reader's settings, validated once here at load,
    and the secrets by the NAME of their environment variable."""

    reader: InfluxSettings
    username_env: str | None
    password_env: str | None
    token_env: str | None
    pool: str
    discovery_lookback: timedelta = timedelta(days=7)
    """How far back from each measurement's newest point the registry finds signals."""


@dataclass(frozen=True, slots=True)
class FilesSettings:
    """Line-protocol export files (absolute paths or glob patterns)."""

    paths: tuple[str, ...]
    precision: Literal["ns", "us", "ms", "s"]
    on_error: Literal["fail", "skip"]


@dataclass(frozen=True, slots=True)
class MeasurementSelection:
    """One measurement (or every one: `*`), its fields and tag filters, and its asset name."""

    name: str
    asset_name: str
    fields: tuple[str, ...] | None = None
    tags: Mapping[str, tuple[str, ...]] | None = None
    tag_filter: TagFilter | None = field(default=None, compare=False)
    """`tags` as the readers apply it (built once, at load)."""

    def __post_init__(self) -> None:
        if self.tag_filter is None and self.tags:
            object.__setattr__(self, "tag_filter", TagFilter.of(self.tags))

    @property
    def every_measurement(self) -> bool:
        return self.name == ALL_MEASUREMENTS

    def named(self, name: str) -> MeasurementSelection:
        """The same selection applied to one measurement found at the source."""
        return MeasurementSelection(name, self.asset_name, self.fields, self.tags, self.tag_filter)

    def query(self, window: Window) -> SeriesQuery:
        """What a read of this (one-measurement) selection asks for in `window`."""
        return SeriesQuery(self.name, window, self.fields, self.tag_filter)

    def keeps(self, signal: Signal) -> bool:
        """Whether a registered signal belongs to this selection (its field and tags)."""
        if self.fields is not None and signal.field not in self.fields:
            return False
        return self.tag_filter is None or self.tag_filter.matches(signal.tags)


@dataclass(frozen=True, slots=True)
class CheckThresholds:
    max_lag: timedelta
    gap_factor: float
    min_gap: timedelta
    blocking: bool


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """Everything a run and its checks need, parsed from one ingest YAML file."""

    source: str
    """The source name: asset key prefix, registry `source`, error messages."""
    reads: SourceKind
    server: ServerSettings | None
    files: FilesSettings | None
    measurements: tuple[MeasurementSelection, ...]
    tables: HistorianTables
    partitions: Partitions
    lateness: timedelta
    backfill_window: timedelta
    """A range run's windows: a whole number of partitions."""
    checks: CheckThresholds
    signal_name: str | None
    units: Mapping[str, str]
    on_timestamp_collision: OnCollision
    backfill_partitions_per_run: int | None
    max_attempts: int
    retry_backoff_seconds: float
    ingest_automation: Literal["cadence", "none"]
    registry_cron: str | None
    explicit_measurements: bool = field(default=True)

    @property
    def pool(self) -> str | None:
        return self.server.pool if self.reads == "influx" and self.server else None

    def windows(self, run: Window) -> list[Window]:
        """A run's partition range cut into slices of whole partitions (`backfill_window`
        wide at most), each replaced atomically; the first one reaches back `lateness` for
        late points. A one-partition run is one window."""
        slices = run.slices(self.backfill_window)
        if self.lateness and slices:
            slices[0] = Window(slices[0].start - self.lateness, slices[0].end)
        return slices

    def unit_of(self, measurement: str, field_name: str) -> str | None:
        return self.units.get(f"{measurement}.{field_name}") or self.units.get(field_name)


DEFAULT_BACKFILL_WINDOW = timedelta(days=1)


def _backfill_window(value: str | None, width: timedelta) -> timedelta:
    """A range run's window: `value` (whole partitions), else a day, at least one partition."""
    if value is None:
        return max(width, DEFAULT_BACKFILL_WINDOW)
    path = ("partitions", "backfill_window")
    window = parse_duration(value, path)
    if window < width or window % width:
        raise SettingError(
            path,
            f"{value!r} is not a whole number of {format_interval(width)} partitions",
            f"use a multiple of the partition width, e.g. '{format_interval(width)}' (one "
            f"partition at a time) or '1 day'",
        )
    return window


def ingest_plan(
    *,
    name: str,
    source: str | None,
    influx: specs.InfluxServerSpec | None,
    files: specs.FilesSpec | None,
    measurements: Sequence[specs.MeasurementSpec] | None,
    target: specs.TargetSpec,
    partitions: specs.IngestPartitionsSpec,
    checks: specs.ChecksSpec,
    automation: specs.AutomationSpec,
    signal_name: str | None,
    units: Mapping[str, str],
    on_timestamp_collision: OnCollision,
    backfill_partitions_per_run: int | None,
    max_attempts: int,
    retry_backoff_seconds: float,
    project_root: Path,
) -> IngestPlan:
    """Parse every setting once; raises SettingError naming the YAML field and the fix."""
    reads: SourceKind = cast(SourceKind, source) if source else ("files" if files else "influx")
    parsed = partitions.parsed()
    parsed = Partitions(parsed.start, parsed.granularity, partitions.end_offset)
    lateness = (
        parse_duration(partitions.lateness, ("partitions", "lateness"))
        if partitions.lateness is not None
        else timedelta()
    )
    backfill_window = _backfill_window(partitions.backfill_window, parsed.width)
    max_lag = (
        parse_duration(checks.max_lag, ("checks", "max_lag"))
        if checks.max_lag is not None
        else 2 * parsed.width + lateness
    )
    chunk = parse_duration(target.chunk_interval, ("target", "chunk_interval"))
    selections = tuple(
        MeasurementSelection(
            m.name,
            m.asset_name or slugify(m.name),
            tuple(m.fields) if m.fields is not None else None,
            {k: tuple(v) for k, v in m.tags.items()} if m.tags else None,
        )
        for m in measurements or []
    ) or (MeasurementSelection(ALL_MEASUREMENTS, "influx_hist"),)
    return IngestPlan(
        source=name,
        reads=reads,
        server=_server(influx) if influx is not None else None,
        files=_files(files, project_root) if files is not None else None,
        measurements=selections,
        tables=HistorianTables(
            schema=target.schema_,
            table=target.table,
            registry=target.registry_table,
            chunk_interval=format_interval(chunk),
        ),
        partitions=parsed,
        lateness=lateness,
        backfill_window=backfill_window,
        checks=CheckThresholds(
            max_lag=max_lag,
            gap_factor=checks.gap_factor,
            min_gap=parse_duration(checks.min_gap, ("checks", "min_gap")),
            blocking=checks.blocking,
        ),
        signal_name=signal_name,
        units=dict(units),
        on_timestamp_collision=on_timestamp_collision,
        backfill_partitions_per_run=backfill_partitions_per_run,
        max_attempts=max_attempts,
        retry_backoff_seconds=retry_backoff_seconds,
        ingest_automation=automation.ingest,
        registry_cron=automation.registry_cron,
        explicit_measurements=bool(measurements),
    )


def _server(spec: specs.InfluxServerSpec) -> ServerSettings:
    host = spec.url.split("//", 1)[1].split("/", 1)[0]
    return ServerSettings(
        reader=InfluxSettings(
            url=spec.url,
            database=spec.database,
            retention_policy=spec.retention_policy,
            timeout_s=spec.timeout_seconds,
            verify_tls=spec.verify_tls,
            ca_cert=spec.ca_cert,
            format=spec.format,
            chunk_size=spec.chunk_size,
            version=spec.version,
        ),
        username_env=spec.username_env,
        password_env=spec.password_env,
        token_env=spec.token_env,
        pool=spec.pool or f"influx_{slugify(host)}",
        discovery_lookback=parse_duration(
            spec.discovery_lookback, ("influx", "discovery_lookback")
        ),
    )


def _files(spec: specs.FilesSpec, project_root: Path) -> FilesSettings:
    paths = tuple(p if Path(p).is_absolute() else str(project_root / p) for p in spec.paths)
    return FilesSettings(paths=paths, precision=spec.precision, on_error=spec.on_error)
