"""`InfluxIngestComponent`: one InfluxDB source (a server or line-protocol files) per YAML file."""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations.
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
from dagster.components.resolved.core_models import (
    AssetAttributesModel,
    resolve_asset_spec_update_kwargs_to_mapping,
)
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from jinja2 import TemplateError
from pydantic import Field, PrivateAttr, field_validator, model_validator

from data_platform.lib.influx import checks, run
from data_platform.lib.influx.plan import IngestPlan, MeasurementSelection, ingest_plan, slugify
from data_platform.lib.influx.scaffolder import InfluxIngestScaffolder
from data_platform.lib.influx.specs import (
    AutomationSpec,
    ChecksSpec,
    FilesSpec,
    InfluxServerSpec,
    IngestPartitionsSpec,
    MeasurementSpec,
    TargetSpec,
    within,
)
from data_platform.lib.timing.errors import SettingError
from data_platform.lib.warehouse import WarehouseResource
from data_platform.lib.yaml_attributes import YamlAttributes, yaml_location

# Dagster's asset attributes (key, key_prefix, group_name, owners, tags, kinds, ...), as YAML.
ResolvedAssetAttributes = Annotated[
    Mapping[str, Any],
    dg.Resolver(resolve_asset_spec_update_kwargs_to_mapping, model_field_type=AssetAttributesModel),
]
_translation = TranslationFnResolver[MeasurementSelection](lambda m: {"measurement": m})
_translation.description = (
    "Asset attributes of each measurement's asset, applied after `asset_attributes`; templates "
    "see `measurement` (name, asset_name, fields, tags) and `spec`."
)
_translation.examples = [{"group_name": "plant_{{ measurement.asset_name }}"}]


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
    partitions: IngestPartitionsSpec = Field(description="Time windows of the source.")
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
    on_timestamp_collision: Literal["fail", "keep_first"] = Field(
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
    translation: Annotated[TranslationFn[MeasurementSelection] | None, _translation] = None

    _project_root: Path = PrivateAttr(default_factory=Path.cwd)
    _defs_file: str = PrivateAttr(default="defs.yaml")
    _plan: IngestPlan | None = PrivateAttr(default=None)

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

    @field_validator("on_timestamp_collision", mode="before")
    @classmethod
    def _collision(cls, value: Any) -> Any:
        if value not in ("fail", "keep_first"):
            raise ValueError(
                f"on_timestamp_collision: {value!r} is not one of 'fail', 'keep_first'"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "InfluxIngestComponent":
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
        asset_names = [m.asset_name or slugify(m.name) for m in self.measurements or []]
        if len(set(asset_names)) != len(asset_names):
            raise ValueError(
                f"source '{self.name}': two measurements map to the same asset name; set "
                "`asset_name` on one of them"
            )
        if self.signal_name is not None:
            try:
                run.NAMING_ENV.from_string(self.signal_name)
            except TemplateError as exc:
                raise ValueError(f"signal_name: not a valid template: {exc}") from exc
        return self

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> "InfluxIngestComponent":
        """Load from YAML and parse the plan, pointing errors at the line of defs.yaml."""
        component = super().load(attributes, context)
        component._project_root = context.project_root
        component._defs_file = str(context.path / "defs.yaml")
        try:
            component.ingest_plan()
        except SettingError as exc:
            raise exc.located(yaml_location(context, exc.path, exc.problem)) from None
        return component

    def ingest_plan(self) -> IngestPlan:
        """The validated ingest, parsed once; raises SettingError naming the YAML field."""
        if self._plan is None:
            self._plan = ingest_plan(
                **{name: getattr(self, name) for name in _PLAN_FIELDS},
                project_root=self._project_root,
            )
        return self._plan

    @property
    def defs_file(self) -> str:
        return self._defs_file

    # -- definitions ------------------------------------------------------------------------
    def get_registry_spec(self) -> dg.AssetSpec:
        plan = self.ingest_plan()
        cron = plan.registry_cron
        table = f"{plan.tables.schema}.{plan.tables.registry}"
        spec = dg.AssetSpec(
            key=dg.AssetKey([plan.source, "influx_tags"]),
            description=f"Signal registry of source '{plan.source}': every measurement, series "
            f"and field mapped to a `tag_id` in {table}.",
            group_name=plan.source,
            kinds={"influxdb", "postgres"},
            automation_condition=dg.AutomationCondition.on_cron(cron) if cron else None,
            metadata={"table": table},
        )
        attrs = dict(self.asset_attributes or {})
        attrs.pop("automation_condition", None)
        return _apply(spec, attrs)

    def get_asset_spec(self, measurement: MeasurementSelection) -> dg.AssetSpec:
        """The asset of one measurement: `asset_attributes`, then `translation`, on top."""
        plan = self.ingest_plan()
        what = (
            "every measurement"
            if measurement.every_measurement
            else f"measurement {measurement.name!r}"
        )
        automation = None
        if plan.ingest_automation == "cadence":
            automation = (
                dg.AutomationCondition.in_latest_time_window()
                & dg.AutomationCondition.cron_tick_passed(plan.partitions.cron).since_last_handled()
                & ~dg.AutomationCondition.in_progress()
            ).with_label(f"on_window_close({plan.partitions.cron})")
        table = f"{plan.tables.schema}.{plan.tables.table}"
        spec = dg.AssetSpec(
            key=dg.AssetKey([plan.source, measurement.asset_name]),
            deps=[self.get_registry_spec().key],
            description=f"{what} of source '{plan.source}', {plan.partitions.granularity} "
            f"windows into {table}.",
            group_name=plan.source,
            kinds={"influxdb", "postgres"},
            automation_condition=automation,
            metadata={"table": table, "measurement": measurement.name},
        )
        spec = _apply(spec, dict(self.asset_attributes or {}))
        return self.translation(spec, measurement) if self.translation else spec

    def assets_by_key(self) -> dict[dg.AssetKey, MeasurementSelection]:
        plan = self.ingest_plan()
        return {self.get_asset_spec(m).key: m for m in plan.measurements}

    def asset_keys(self) -> set[dg.AssetKey]:
        return set(self.assets_by_key())

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        plan = self.ingest_plan()
        specs = [self.get_asset_spec(m) for m in plan.measurements]
        component = self

        @dg.multi_asset(
            name=f"{plan.source}_ingest",
            specs=specs,
            check_specs=[c for spec in specs for c in checks.check_specs(plan, spec.key)],
            partitions_def=plan.partitions.definition(),
            backfill_policy=dg.BackfillPolicy.single_run()
            if plan.backfill_partitions_per_run is None
            else dg.BackfillPolicy.multi_run(plan.backfill_partitions_per_run),
            can_subset=True,
            pool=plan.pool,
        )
        def ingest(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
            yield from component.execute(context, warehouse)

        @dg.multi_asset(
            name=f"{plan.source}_registry", specs=[self.get_registry_spec()], pool=plan.pool
        )
        def registry(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
            yield component.refresh_registry(context, warehouse)

        return dg.Definitions(assets=[registry, ingest])

    # -- run time ---------------------------------------------------------------------------
    def open_reader(self) -> Any:
        """A reader for this source (a context manager); secrets are read at run time."""
        return run.open_reader(self.ingest_plan())

    def execute(
        self, context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        """Replace every selected measurement's windows of the run, then check them."""
        selected = {
            key: m for key, m in self.assets_by_key().items() if key in context.selected_asset_keys
        }
        yield from run.ingest(context, self.ingest_plan(), warehouse, selected)

    def refresh_registry(
        self, context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Discover measurements, series, fields and types; upsert the registry."""
        return run.refresh_registry(self.ingest_plan(), warehouse)


_PLAN_FIELDS = (
    "name",
    "source",
    "influx",
    "files",
    "measurements",
    "target",
    "partitions",
    "checks",
    "automation",
    "signal_name",
    "units",
    "on_timestamp_collision",
    "backfill_partitions_per_run",
    "max_attempts",
    "retry_backoff_seconds",
)


def _apply(spec: dg.AssetSpec, attrs: dict[str, Any]) -> dg.AssetSpec:
    """`asset_attributes` on a spec: key_prefix prefixes, tags/metadata/kinds merge."""
    prefix = attrs.pop("key_prefix", None)
    if prefix:
        spec = spec.replace_attributes(key=spec.key.with_prefix(prefix))
    merge = {k: attrs.pop(k) for k in ("tags", "metadata") if k in attrs}
    if "kinds" in attrs:
        attrs["kinds"] = set(attrs["kinds"]) | set(spec.kinds)
    if merge:
        spec = spec.merge_attributes(**merge)
    return spec.replace_attributes(**attrs) if attrs else spec
