"""`InfluxIngestComponent`: one InfluxDB source (a server or line-protocol files) per YAML file."""

import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Protocol, Self

import dagster as dg
import psycopg
from dagster.components.resolved.core_models import (
    AssetAttributesModel,
    resolve_asset_spec_update_kwargs_to_mapping,
)
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, PrivateAttr, field_validator, model_validator

from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import HistorianTables, ensure_tables
from data_platform.lib.historian.window import WindowLock, WindowWrite, replace_window
from data_platform.lib.influx import checks
from data_platform.lib.influx.reader.filters import TagFilter
from data_platform.lib.influx.reader.model import FieldInfo, SeriesBatch, Tags
from data_platform.lib.influx.scaffolder import InfluxIngestScaffolder
from data_platform.lib.influx.specs import (
    GRANULARITY_CRON,
    AutomationSpec,
    ChecksSpec,
    FilesSpec,
    InfluxServerSpec,
    MeasurementSpec,
    PartitionsSpec,
    TargetSpec,
    parse_duration,
    within,
)
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource, WarehouseUnavailable
from data_platform.lib.yaml_attributes import YamlAttributes

logger = logging.getLogger(__name__)


# Dagster's asset attributes (key, key_prefix, group_name, owners, tags, kinds, ...), as YAML.
ResolvedAssetAttributes = Annotated[
    Mapping[str, Any],
    dg.Resolver(resolve_asset_spec_update_kwargs_to_mapping, model_field_type=AssetAttributesModel),
]


class IngestError(Exception):
    """A window of a source could not be ingested; the message names source, window and fix."""


class InfluxReader(Protocol):
    """What the component needs from a source: an InfluxDB server or line-protocol files."""

    def list_measurements(self) -> list[str]: ...
    def list_field_keys(self, measurement: str) -> list[FieldInfo]: ...
    def list_series(self, measurement: str) -> list[Tags]: ...
    def stream_window(
        self,
        measurement: str,
        window: Window,
        *,
        fields: Sequence[str] | None = None,
        tag_filters: Mapping[str, Sequence[str]] | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[SeriesBatch]: ...
    def window_stats(self, measurement: str, window: Window) -> Mapping[str, Any]: ...


_SLUG = re.compile(r"[^a-z0-9_]+")


def slugify(text: str) -> str:
    slug = _SLUG.sub("_", text.lower()).strip("_")
    return slug if slug and not slug[0].isdigit() else f"m_{slug}"


def _transient_errors() -> tuple[type[BaseException], ...]:
    from data_platform.lib.influx.reader.errors import InfluxTransientError

    return (InfluxTransientError, WarehouseUnavailable, psycopg.OperationalError)


@dataclass
class MeasurementRun:
    """What one run did for one measurement, across its windows."""

    measurement: MeasurementSpec
    writes: list[WindowWrite] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(w.rows for w in self.writes)

    @property
    def newest_ns(self) -> int | None:
        values = [w.newest_ns for w in self.writes if w.newest_ns is not None]
        return max(values) if values else None


@dg.scaffold_with(InfluxIngestScaffolder)
class InfluxIngestComponent(YamlAttributes, dg.Component, dg.Resolvable, dg.Model):
    """Ingest an InfluxDB source into PostgreSQL/TimescaleDB, incrementally by time window."""

    name: str = Field(
        description="Source name: asset key prefix, registry `source` and error messages.",
        examples=["plant_north"],
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$",
    )
    source: str | None = Field(
        default=None,
        description="What to read when both `influx` and `files` are set: `influx` or `files` "
        "(templatable, e.g. files until INFLUX_URL is set). Default: the one block given.",
        examples=["{{ 'influx' if env.INFLUX_URL else 'files' }}"],
    )
    influx: InfluxServerSpec | None = Field(
        default=None, description="Read from an InfluxDB server (v1 `/query` API)."
    )
    files: FilesSpec | None = Field(
        default=None, description="Read from line-protocol export files instead of a server."
    )
    measurements: list[MeasurementSpec] | None = Field(
        default=None,
        description="Measurements to ingest, one asset each. Default: every measurement found "
        "at run time, as one asset.",
    )
    target: TargetSpec = Field(default_factory=TargetSpec, description="Warehouse tables.")
    partitions: PartitionsSpec = Field(description="Time windows of the source.")
    signal_name: Annotated[
        str | None,
        dg.Resolver(lambda _ctx, value: value, model_field_type=str, inject_before_resolve=False),
    ] = Field(
        default=None,
        description="Jinja template of the stored `tag_name` of a signal, from `source`, "
        "`measurement`, `tags` (a mapping), `field` and `series` (line-protocol series key). "
        "Default `{{ source }}/{{ series }}.{{ field }}`, unique for every series and field.",
        examples=["{{ tags.site }}.{{ tags.device }}.{{ field }}"],
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="Unit per field name (`field`) or per `measurement.field`.",
        examples=[{"active_power": "kW", "inverter.temp": "degC"}],
    )
    on_timestamp_collision: str = Field(
        default="fail",
        description="Two points of a signal within one microsecond (PostgreSQL's resolution): "
        "`fail` the window, or `keep_first` and count the others.",
        examples=["fail", "keep_first"],
    )
    checks: ChecksSpec = Field(default_factory=ChecksSpec, description="Check thresholds.")
    automation: AutomationSpec = Field(
        default_factory=AutomationSpec, description="Declarative automation of the assets."
    )
    backfill_partitions_per_run: int | None = Field(
        default=None,
        description="Backfills: partitions per run. Default: the whole range in one run, "
        "processed in atomic partition-wide slices; set e.g. 1 to fan a backfill out over "
        "concurrent runs (capped by the source's concurrency pool).",
    )
    max_attempts: int = Field(
        default=3,
        description="Attempts per window on transient failures (connection, 5xx, timeout).",
    )
    retry_backoff_seconds: float = Field(
        default=2.0, description="First retry delay; doubles at each attempt."
    )
    asset_attributes: ResolvedAssetAttributes | None = Field(
        default=None,
        description="Dagster asset attributes for every asset of the source: key_prefix, "
        "group_name, owners, tags, kinds, automation_condition, ...",
    )

    _project_root: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("max_attempts")
    @classmethod
    def _attempts(cls, value: int) -> int:
        return within(value, 1, 10, "max_attempts")

    @field_validator("retry_backoff_seconds")
    @classmethod
    def _backoff(cls, value: float) -> float:
        return within(value, 0, 600, "retry_backoff_seconds")

    @field_validator("backfill_partitions_per_run")
    @classmethod
    def _per_run(cls, value: int | None) -> int | None:
        return None if value is None else within(value, 1, 10_000, "backfill_partitions_per_run")

    @field_validator("on_timestamp_collision")
    @classmethod
    def _collision(cls, value: str) -> str:
        if value not in ("fail", "keep_first"):
            raise ValueError(
                f"on_timestamp_collision: {value!r} is not one of 'fail', 'keep_first'"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.source is not None:
            if self.source not in ("influx", "files"):
                raise ValueError(
                    f"source '{self.name}': `source` is {self.source!r}; write `influx` or `files`"
                )
            if getattr(self, self.source) is None:
                raise ValueError(
                    f"source '{self.name}': `source` is {self.source!r} but the `{self.source}` "
                    "block is missing; add it"
                )
        elif (self.influx is None) == (self.files is None):
            raise ValueError(
                f"source '{self.name}': set one of `influx` (a server) or `files` "
                "(line-protocol exports), or both and `source` to choose"
            )
        names = [m.name for m in self.measurements or []]
        if len(set(names)) != len(names):
            raise ValueError(
                f"source '{self.name}': a measurement is listed twice in `measurements`"
            )
        asset_names = [self.asset_name(m) for m in self.measurements or []]
        if len(set(asset_names)) != len(asset_names):
            raise ValueError(
                f"source '{self.name}': two measurements map to the same asset name; set "
                "`asset_name` on one of them"
            )
        if self.signal_name is not None:
            try:
                _NAMING_ENV.from_string(self.signal_name)
            except TemplateError as exc:
                raise ValueError(f"signal_name: not a valid template: {exc}") from exc
        return self

    # -- definitions ------------------------------------------------------------------------
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        self._project_root = context.project_root
        partitions_def = self.partitions.partitions_def()
        registry_spec = self.get_registry_spec()
        ingest_specs = [self.get_ingest_spec(m, registry_spec.key) for m in self.measurement_specs]
        check_specs = [c for spec in ingest_specs for c in self.get_check_specs(spec.key)]
        component = self

        @dg.multi_asset(
            name=f"{self.name}_ingest",
            specs=ingest_specs,
            check_specs=check_specs,
            partitions_def=partitions_def,
            backfill_policy=self.backfill_policy,
            can_subset=True,
            pool=self.pool,
        )
        def ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
            yield from component.execute(context, warehouse)

        @dg.multi_asset(name=f"{self.name}_registry", specs=[registry_spec], pool=self.pool)
        def registry(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
            yield component.refresh_registry(context, warehouse)

        return dg.Definitions(assets=[registry, ingest])

    @cached_property
    def measurement_specs(self) -> list[MeasurementSpec]:
        """The configured measurements, or one catch-all entry (name "") for all of them."""
        return self.measurements or [MeasurementSpec(name="*", asset_name="influx_hist")]

    def asset_name(self, measurement: MeasurementSpec) -> str:
        return measurement.asset_name or slugify(measurement.name)

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        if self.backfill_partitions_per_run is None:
            return dg.BackfillPolicy.single_run()
        return dg.BackfillPolicy.multi_run(self.backfill_partitions_per_run)

    @property
    def reads_files(self) -> bool:
        return self.source == "files" or (self.source is None and self.files is not None)

    @property
    def pool(self) -> str | None:
        if self.influx is None or self.reads_files:
            return None
        if self.influx.pool:
            return self.influx.pool
        host = self.influx.url.split("//", 1)[1].split("/", 1)[0]
        return f"influx_{slugify(host)}"

    def _attributes(self, *, for_registry: bool) -> dict[str, Any]:
        attrs = dict(self.asset_attributes or {})
        if for_registry:
            attrs.pop("automation_condition", None)
        return attrs

    def _apply(self, spec: dg.AssetSpec, attrs: Mapping[str, Any]) -> dg.AssetSpec:
        attrs = dict(attrs)
        prefix = attrs.pop("key_prefix", None)
        if prefix:
            spec = spec.replace_attributes(key=spec.key.with_prefix(prefix))
        merge = {k: attrs.pop(k) for k in ("tags", "metadata") if k in attrs}
        if "kinds" in attrs:
            attrs["kinds"] = set(attrs["kinds"]) | set(spec.kinds)
        if merge:
            spec = spec.merge_attributes(**merge)
        return spec.replace_attributes(**attrs) if attrs else spec

    def get_registry_spec(self) -> dg.AssetSpec:
        automation = (
            dg.AutomationCondition.on_cron(self.automation.registry_cron)
            if self.automation.registry_cron
            else None
        )
        spec = dg.AssetSpec(
            key=dg.AssetKey([self.name, "influx_tags"]),
            description=f"Signal registry of source '{self.name}': every measurement, series "
            f"and field mapped to a `tag_id` in {self.target.schema_}.{self.target.registry_table}.",
            group_name=self.name,
            kinds={"influxdb", "postgres"},
            automation_condition=automation,
            metadata={"table": f"{self.target.schema_}.{self.target.registry_table}"},
        )
        return self._apply(spec, self._attributes(for_registry=True))

    def get_ingest_spec(
        self, measurement: MeasurementSpec, registry_key: dg.AssetKey
    ) -> dg.AssetSpec:
        what = (
            "every measurement" if measurement.name == "*" else f"measurement {measurement.name!r}"
        )
        automation = None
        if self.automation.ingest == "cadence":
            cron = GRANULARITY_CRON[self.partitions.granularity]
            automation = (
                dg.AutomationCondition.in_latest_time_window()
                & dg.AutomationCondition.cron_tick_passed(cron).since_last_handled()
                & ~dg.AutomationCondition.in_progress()
            ).with_label(f"on_window_close({cron})")
        spec = dg.AssetSpec(
            key=dg.AssetKey([self.name, self.asset_name(measurement)]),
            deps=[registry_key],
            description=f"{what} of source '{self.name}', {self.partitions.granularity} windows "
            f"into {self.target.schema_}.{self.target.table}.",
            group_name=self.name,
            kinds={"influxdb", "postgres"},
            automation_condition=automation,
            metadata={
                "table": f"{self.target.schema_}.{self.target.table}",
                "measurement": measurement.name,
            },
        )
        return self._apply(spec, self._attributes(for_registry=False))

    def get_check_specs(self, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        return [
            dg.AssetCheckSpec(
                "reconciliation",
                asset=key,
                blocking=self.checks.blocking,
                description="Count and time range per field in the window match the source.",
            ),
            dg.AssetCheckSpec("lag", asset=key, description="Newest point is recent enough."),
            dg.AssetCheckSpec(
                "gaps", asset=key, description="No series silent far longer than its interval."
            ),
            dg.AssetCheckSpec(
                "schema_drift", asset=key, description="No field changed type at the source."
            ),
        ]

    # -- run time ---------------------------------------------------------------------------
    @property
    def tables(self) -> HistorianTables:
        return HistorianTables(
            schema=self.target.schema_,
            table=self.target.table,
            registry=self.target.registry_table,
            chunk_interval=self.target.chunk_interval,
        )

    @contextmanager
    def open_reader(self) -> Iterator[InfluxReader]:
        """A reader for this source; secrets are read from the environment here, at run time."""
        if not self.reads_files:
            from data_platform.lib.influx.reader.client import InfluxClient
            from data_platform.lib.influx.reader.settings import Credentials, InfluxSettings

            assert self.influx is not None

            spec = self.influx
            settings = InfluxSettings(
                url=spec.url,
                database=spec.database,
                retention_policy=spec.retention_policy,
                timeout_s=spec.timeout_seconds,
                verify_tls=spec.verify_tls,
                ca_cert=spec.ca_cert,
                format=spec.format,
                chunk_size=spec.chunk_size,
            )
            credentials = Credentials(
                username=self._secret(spec.username_env, "influx.username_env"),
                password=self._secret(spec.password_env, "influx.password_env"),
                token=self._secret(spec.token_env, "influx.token_env"),
            )
            with InfluxClient(
                settings,
                credentials,
                source=self.name,
                max_retries=self.max_attempts - 1,
                backoff_s=self.retry_backoff_seconds,
            ) as client:
                yield client  # type: ignore[misc]
        else:
            from data_platform.lib.influx.reader.source import LineProtocolSource

            assert self.files is not None
            paths = [
                p if Path(p).is_absolute() else str(self._project_root / p)
                for p in self.files.paths
            ]
            yield LineProtocolSource(  # type: ignore[misc]
                paths, precision=self.files.precision, on_error=self.files.on_error
            )

    def _secret(self, env_name: str | None, setting: str) -> str | None:
        if env_name is None:
            return None
        value = os.environ.get(env_name)
        if not value:
            raise IngestError(
                f"source '{self.name}': {setting} names {env_name}, which is not set; set it in "
                ".env (local) or the deployment's environment"
            )
        return value

    def signal_namer(self) -> Any:
        if self.signal_name is None:
            return Signal.default_name
        template = _NAMING_ENV.from_string(self.signal_name)

        def name(signal: Signal) -> str:
            try:
                return template.render(
                    source=signal.source,
                    measurement=signal.measurement,
                    tags=dict(signal.tags),
                    field=signal.field,
                    series=signal.series_key,
                ).strip()
            except TemplateError as exc:
                raise IngestError(
                    f"source '{self.name}': signal_name failed for {signal.key}: {exc}"
                ) from exc

        return name

    def unit_of(self, signal: Signal) -> str | None:
        return self.units.get(f"{signal.measurement}.{signal.field}") or self.units.get(
            signal.field
        )

    def new_registry(self) -> SignalRegistry:
        return SignalRegistry(self.name, self.tables, self.signal_namer(), self.unit_of)

    def windows(self, context: dg.AssetExecutionContext) -> list[Window]:
        """The run's partition range cut into partition-wide slices, each replaced atomically."""
        time_window = context.partition_time_window
        start = time_window.start.astimezone(UTC)
        end = time_window.end.astimezone(UTC)
        width = self.partitions.width
        slices = []
        cursor = start
        while cursor < end:
            slices.append(Window(cursor, min(cursor + width, end)))
            cursor += width
        if self.partitions.lateness and slices:
            late = parse_duration(self.partitions.lateness, "partitions.lateness")
            slices[0] = Window(slices[0].start - late, slices[0].end)
        return slices

    def execute(
        self, context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        """Replace every selected measurement's windows of the run, then check them."""
        selected = [
            m
            for m in self.measurement_specs
            if dg.AssetKey([self.name, self.asset_name(m)])
            in _unprefixed(context.selected_asset_keys)
        ]
        windows = self.windows(context)
        run_window = Window(windows[0].start, windows[-1].end)
        registry = self.new_registry()
        with ExitStack() as stack:
            reader = stack.enter_context(self.open_reader())
            with warehouse.connection() as conn:
                engine = ensure_tables(conn, self.tables)
            skipped, examples = skipped_lines(reader)
            if skipped:
                context.log.warning(
                    f"source '{self.name}': {skipped} malformed line(s) in the files were skipped "
                    f"(files.on_error: skip), e.g. {examples[0]}"
                )
            results = []
            for measurement in selected:
                names = self._measurement_names(reader, measurement)
                runs = [
                    MeasurementRun(
                        MeasurementSpec(name=n, fields=measurement.fields, tags=measurement.tags)
                    )
                    for n in names
                ]
                types = {n: reader.list_field_keys(n) for n in names}
                self.register_signals(warehouse, reader, registry, measurement, types)
                for window in windows:
                    for run in runs:
                        started = time.perf_counter()
                        run.writes.append(
                            self.write_window(
                                context, warehouse, reader, registry, run.measurement, window
                            )
                        )
                        run.seconds += time.perf_counter() - started
                results.append(
                    self._result(
                        context,
                        warehouse,
                        reader,
                        registry,
                        measurement,
                        runs,
                        types,
                        run_window,
                        engine,
                    )
                )
        yield from results

    def register_signals(
        self,
        warehouse: WarehouseResource,
        reader: InfluxReader,
        registry: SignalRegistry,
        measurement: MeasurementSpec,
        types: Mapping[str, list[FieldInfo]],
    ) -> None:
        """Register the source's known series x fields before any window is written.

        Signals that appear only during a window's stream are registered then; doing the bulk
        up front keeps registry writes out of the windows' transactions.
        """
        signals: list[Signal] = []
        field_types: dict[tuple[str, str], str] = {}
        for name, infos in types.items():
            by_field: dict[str, set[str]] = {}
            for info in infos:
                by_field.setdefault(info.field, set()).add(info.influx_type)
            fields = [f for f in by_field if measurement.fields is None or f in measurement.fields]
            for f in fields:
                field_types[(name, f)] = ",".join(sorted(by_field[f]))
            tag_filter = TagFilter.of(measurement.tags)
            for tags in reader.list_series(name):
                if tag_filter is not None and not tag_filter.matches(tags):
                    continue
                signals.extend(Signal(self.name, name, tags, f) for f in fields)
        with warehouse.connection() as conn:
            registry.load(conn)
            registry.ensure(conn, signals, field_types)

    def _measurement_names(self, reader: InfluxReader, measurement: MeasurementSpec) -> list[str]:
        if measurement.name != "*":
            return [measurement.name]
        return sorted(reader.list_measurements())

    def write_window(
        self,
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        reader: InfluxReader,
        registry: SignalRegistry,
        measurement: MeasurementSpec,
        window: Window,
    ) -> WindowWrite:
        """Replace one measurement's window atomically, retrying transient failures."""
        transient = _transient_errors()
        for attempt in range(1, self.max_attempts + 1):
            try:
                with (
                    warehouse.connection() as conn,
                    warehouse.connection(autocommit=True) as reg_conn,
                ):

                    def known_ids() -> list[int]:
                        signals = registry.load(reg_conn, measurement.name)
                        return [s.tag_id for s in signals if _matches(s.signal, measurement)]

                    return replace_window(
                        conn,
                        registry,
                        window,
                        reader.stream_window(
                            measurement.name,
                            window,
                            fields=measurement.fields,
                            tag_filters=measurement.tags,
                        ),
                        delete_tag_ids=known_ids,
                        on_collision=self.on_timestamp_collision,
                        register_conn=reg_conn,
                        lock=WindowLock(f"{self.name}/{measurement.name}", self.partitions.width),
                    )
            except transient as exc:
                if attempt == self.max_attempts:
                    raise IngestError(
                        f"source '{self.name}', measurement {measurement.name!r}, window "
                        f"{window}: failed after {attempt} attempts: {exc}. The window holds "
                        "what it held before this run; re-run it once the server is back."
                    ) from exc
                delay = self.retry_backoff_seconds * 2 ** (attempt - 1)
                context.log.warning(
                    f"source '{self.name}', measurement {measurement.name!r}, window {window}: "
                    f"attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying in "
                    f"{delay:.1f}s"
                )
                time.sleep(delay)
            except HistorianWriteError as exc:
                raise IngestError(str(exc)) from exc
        raise AssertionError("unreachable")

    def _result(
        self,
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        reader: InfluxReader,
        registry: SignalRegistry,
        measurement: MeasurementSpec,
        runs: list[MeasurementRun],
        types: Mapping[str, list[FieldInfo]],
        run_window: Window,
        engine: str | None,
    ) -> dg.MaterializeResult:
        rows = sum(r.rows for r in runs)
        seconds = sum(r.seconds for r in runs)
        newest = [r.newest_ns for r in runs if r.newest_ns is not None]
        newest_ns = max(newest) if newest else None
        lag_s = (time.time_ns() - newest_ns) / 1e9 if newest_ns is not None else None
        series = sum(w.series for r in runs for w in r.writes)
        preview = [p for r in runs for w in r.writes for p in w.preview][:5]
        key = dg.AssetKey([self.name, self.asset_name(measurement)])
        with warehouse.connection() as conn:
            check_results = checks.run_checks(
                conn,
                component=self,
                reader=reader,
                registry=registry,
                asset_key=key,
                runs=runs,
                types=types,
                run_window=run_window,
                lag_s=lag_s,
            )
        metadata: dict[str, Any] = {
            "dagster/row_count": dg.MetadataValue.int(rows),
            "rows_written": dg.MetadataValue.int(rows),
            "rows_replaced": dg.MetadataValue.int(sum(w.deleted for r in runs for w in r.writes)),
            "values_per_second": dg.MetadataValue.float(
                round(rows / seconds, 1) if seconds else 0.0
            ),
            "window": dg.MetadataValue.text(str(run_window)),
            "windows": dg.MetadataValue.int(len(runs[0].writes) if runs else 0),
            "series": dg.MetadataValue.int(series),
            "signals": dg.MetadataValue.int(
                len({t for r in runs for w in r.writes for t in w.signals})
            ),
            "measurements": dg.MetadataValue.text(", ".join(r.measurement.name for r in runs)),
            "engine": dg.MetadataValue.text(f"timescaledb {engine}" if engine else "postgresql"),
            "table": dg.MetadataValue.text(str(self.tables)),
            "timestamp_collisions": dg.MetadataValue.int(
                sum(w.collisions for r in runs for w in r.writes)
            ),
        }
        if self.reads_files:
            skipped, examples = skipped_lines(reader)
            metadata["skipped_lines"] = dg.MetadataValue.int(skipped)
            if examples:
                metadata["skipped_line_examples"] = dg.MetadataValue.json(examples)
        if lag_s is not None:
            metadata["lag_seconds"] = dg.MetadataValue.float(round(lag_s, 3))
            metadata["newest_point"] = dg.MetadataValue.text(
                datetime.fromtimestamp(newest_ns / 1e9, UTC).isoformat()  # type: ignore[operator]
            )
        if preview:
            lines = ["| ts | tag_name | value | value_text |", "|---|---|---|---|"]
            for ts_ns, name, number, text in preview:
                stamp = datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat()
                lines.append(f"| {stamp} | {_md(name)} | {number} | {_md(text or '')} |")
            metadata["preview"] = dg.MetadataValue.md("\n".join(lines))
        return dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=check_results)

    def refresh_registry(
        self, context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Discover measurements, series, fields and types; upsert the registry."""
        with self.open_reader() as reader, warehouse.connection() as conn:
            ensure_tables(conn, self.tables)
            registry = self.new_registry()
            before = {r.signal: r for r in registry.load(conn)}
            discovered: list[Signal] = []
            field_types: dict[tuple[str, str], str] = {}
            for spec in self.measurement_specs:
                for name in self._measurement_names(reader, spec):
                    infos = reader.list_field_keys(name)
                    by_field: dict[str, list[str]] = {}
                    for info in infos:
                        by_field.setdefault(info.field, []).append(info.influx_type)
                    fields = [f for f in by_field if spec.fields is None or f in spec.fields]
                    for f in fields:
                        field_types[(name, f)] = ",".join(sorted(set(by_field[f])))
                    tag_filter = TagFilter.of(spec.tags)
                    for tags in reader.list_series(name):
                        if tag_filter is not None and not tag_filter.matches(tags):
                            continue
                        discovered.extend(Signal(self.name, name, tags, f) for f in fields)
            registry.ensure(conn, discovered, field_types)
            found = set(discovered)
            added = [s for s in discovered if s not in before]
            removed = [s for s, r in before.items() if s not in found]
            changed = registry.update_types(conn, field_types)
            registry.mark_removed(conn, removed, found)
            conn.commit()
        return dg.MaterializeResult(
            metadata={
                "signals": dg.MetadataValue.int(len(found)),
                "added": dg.MetadataValue.int(len(added)),
                "removed": dg.MetadataValue.int(len(removed)),
                "type_changes": dg.MetadataValue.json(changed),
                "added_preview": dg.MetadataValue.json([s.key for s in added[:20]]),
                "removed_preview": dg.MetadataValue.json([s.key for s in removed[:20]]),
                "dagster/row_count": dg.MetadataValue.int(len(found)),
            }
        )


_NAMING_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def skipped_lines(reader: InfluxReader) -> tuple[int, list[str]]:
    """Malformed lines a files source skipped (`on_error: skip`) in all its files: how many,
    and the first few errors (file, line, problem). Lines are not in any window, so every
    materialization of the source reports the total."""
    from data_platform.lib.influx.reader.source import LineProtocolSource

    if not isinstance(reader, LineProtocolSource):
        return 0, []
    stats = [index.stats for index in reader.files()]
    return sum(s.skipped_lines for s in stats), [str(e) for s in stats for e in s.errors][:5]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _matches(signal: Signal, measurement: MeasurementSpec) -> bool:
    if measurement.fields is not None and signal.field not in measurement.fields:
        return False
    tag_filter = TagFilter.of(measurement.tags)
    return tag_filter is None or tag_filter.matches(signal.tags)


def _unprefixed(keys: Any) -> set[dg.AssetKey]:
    """Selected keys with any `key_prefix` removed (keys end in [source, asset])."""
    return {dg.AssetKey(list(k.path[-2:])) for k in keys}
