"""`TimescaleAggregateComponent`: partition-aligned rollups of a raw time-series table."""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations.
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Annotated, Any

import dagster as dg
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from pydantic import PrivateAttr, ValidationError

from data_platform.lib.timescale import checks
from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.engines import RollupEngine
from data_platform.lib.timescale.plan import (
    AGGREGATES,
    BUCKET_COLUMN,
    Rollup,
    RollupConfigError,
    RollupPlan,
)
from data_platform.lib.timescale.postgres import PostgresEngine
from data_platform.lib.timescale.scaffolder import TimescaleAggregateScaffolder
from data_platform.lib.timescale.sources import (
    ResolvedSources,
    check_same_partitions,
    resolve_sources,
)
from data_platform.lib.timescale.specs import (
    BucketSpec,
    ChecksSpec,
    ColumnstoreSpec,
    RefreshSpec,
    RetentionSpec,
    SourceSpec,
    TargetSpec,
    doc,
)
from data_platform.lib.timescale.timescaledb import TimescaleEngine
from data_platform.lib.timescale.yaml_plan import yaml_rollup_plan
from data_platform.lib.timing.errors import SettingError
from data_platform.lib.timing.partitions import Partitions, PartitionsSpec, require_aligned
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource, has_timescaledb
from data_platform.lib.yaml_attributes import YamlAttributes, yaml_location


def _rollup_template_vars(rollup: Rollup) -> dict[str, Any]:
    return {"rollup": rollup}


# Conditions are immutable; building one per asset is a measurable share of loading.
_EAGER = dg.AutomationCondition.eager()

_translation_resolver = TranslationFnResolver[Rollup](_rollup_template_vars)
_translation_resolver.description = (
    "Asset attributes for every rollup (key, key_prefix, group_name, owners, tags, kinds, "
    "automation_condition, ...). Templates see `rollup` (name, suffix, width_text) and `spec`."
)
_translation_resolver.examples = [
    {"key_prefix": ["plant_a", "rollups"], "group_name": "plant_a_rollups"},
    {"key": "warehouse/{{ rollup.name }}", "owners": ["team:process"]},
]


@dg.scaffold_with(TimescaleAggregateScaffolder)
class TimescaleAggregateComponent(YamlAttributes, dg.Component, dg.Resolvable, dg.Model):
    """Roll up a raw time-series table into time buckets, one partitioned asset per bucket width.

    On TimescaleDB each bucket width is a continuous aggregate (wider ones built on narrower
    ones) with refresh, columnstore and retention policies; on plain PostgreSQL the same YAML
    gives rollup tables with the same columns, maintained by the component. Materializing a
    partition refreshes exactly that time window (widened to whole buckets), narrowest first.

    Stored columns: `bucket`, the signal column, and the selected aggregates; `count` is always
    stored (checks and wider averages need it) and `sum` whenever `avg` is.
    """

    source: Annotated[
        SourceSpec,
        doc(
            "The raw table and its ingest assets.",
            [{"schema": "plant_a", "assets": ["plant_a/influx/power"]}],
        ),
    ]
    target: Annotated[
        TargetSpec,
        doc(
            "Schema and name prefix of the rollups.",
            [{"schema": "plant_a", "name_prefix": "plant_a_power"}],
        ),
    ]
    partitions: Annotated[
        PartitionsSpec | None,
        doc(
            "Time partitions, identical to the ingest component's. Left out: the partitions of "
            "the ingest components that write source.assets.",
            [{"start": "2024-01-01", "granularity": "hourly"}],
        ),
    ] = None
    buckets: Annotated[
        list[BucketSpec],
        doc(
            "Bucket widths; each becomes one rollup and one asset.",
            [[{"width": "1 minute"}, {"width": "1 hour"}, {"width": "1 day"}]],
        ),
    ]
    aggregates: Annotated[
        list[str],
        doc(
            "Aggregates to store: a subset of avg, min, max, count, sum, first, last "
            "(count is always stored, sum whenever avg is).",
            [["avg", "min", "max", "last"]],
        ),
    ] = list(AGGREGATES)
    materialized_only: Annotated[
        bool,
        doc(
            "TimescaleDB only: false makes the views real-time (recent raw data is aggregated "
            "on read).",
            [True],
        ),
    ] = True
    refresh: Annotated[
        RefreshSpec | None,
        doc(
            "Refresh policy for every bucket without its own. Left out: rollups refresh only "
            "through Dagster materializations.",
            [
                {
                    "start_offset": "3 hours",
                    "end_offset": "1 minute",
                    "schedule_interval": "30 minutes",
                }
            ],
        ),
    ] = None
    columnstore: Annotated[
        ColumnstoreSpec | None,
        doc("Columnstore policy for the rollups (TimescaleDB).", [{"after": "7 days"}]),
    ] = None
    retention: Annotated[
        RetentionSpec | None,
        doc(
            "Retention of rollups and of the raw table. TimescaleDB: retention policies; "
            "PostgreSQL: rows are deleted by each materialization.",
            [{"drop_after": "365 days", "raw_drop_after": "30 days"}],
        ),
    ] = None
    on_definition_change: Annotated[
        str,
        dg.Resolver.default(
            description="What to do when a rollup in the warehouse was built from a different "
            "definition (source, widths, aggregates): `fail` stops with an error; `rebuild` "
            "drops it and the rollups built on it, recreates them and re-materializes their "
            "history from partitions.start.",
            examples=["fail"],
            json_schema_extra={"enum": ["fail", "rebuild"]},
        ),
    ] = "fail"
    checks: Annotated[
        ChecksSpec | None,
        doc("Asset check thresholds.", [{"freshness_max_lag": "2 hours"}]),
    ] = None
    backfill_partitions_per_run: Annotated[
        int | None,
        doc(
            "Backfills: partitions per run. Default: the whole range in one run, refreshed in "
            "atomic slices of about a day; set e.g. 1 to fan a backfill out over runs. A run "
            "of ingest and rollups together needs the same value on both.",
            [None, 24],
        ),
    ] = None
    translation: Annotated[TranslationFn[Rollup] | None, _translation_resolver] = None

    _plan: RollupPlan | None = PrivateAttr(default=None)
    _sources: ResolvedSources | None = PrivateAttr(default=None)
    _load_context: dg.ComponentLoadContext | None = PrivateAttr(default=None)
    """Kept for errors found when definitions are built: they point at the YAML line too."""
    _specs: dict[str, dg.AssetSpec] = PrivateAttr(default_factory=dict)

    @classmethod
    def load(
        cls, attributes: Any, context: dg.ComponentLoadContext
    ) -> "TimescaleAggregateComponent":
        """Load from YAML and validate, pointing errors at the offending line of defs.yaml."""
        try:
            component = super().load(attributes, context)
            component._load_context = context
            component.check_source_rule()
            component.backfill_policy()
            if component.partitions is not None:
                component.rollup_plan()
        except SettingError as exc:
            raise exc.located(yaml_location(context, exc.path, exc.problem)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            path = tuple(p for p in first["loc"] if isinstance(p, str | int))
            error = RollupConfigError(
                path,
                first["msg"],
                "correct the value; `dg utils inspect-component "
                "data_platform.lib.TimescaleAggregateComponent` shows the schema",
            )
            raise error.located(yaml_location(context, path, first["msg"])) from None
        return component

    # -- configuration ---------------------------------------------------------------------------

    def rollup_plan(self) -> RollupPlan:
        """The validated rollup family; raises RollupConfigError naming the YAML field."""
        if self._plan is None:
            self._plan = yaml_rollup_plan(
                source_spec=self.source,
                partitions=self.rollup_partitions(),
                **{name: getattr(self, name) for name in _PLAN_FIELDS},
            )
        return self._plan

    def check_source_rule(self) -> None:
        """One of source.assets, source.select and source.all_writers says what the inputs are."""
        src = self.source
        given = [
            name
            for name, on in (
                ("assets", bool(src.assets)),
                ("select", src.select is not None),
                ("all_writers", src.all_writers),
            )
            if on
        ]
        if len(given) > 1:
            raise RollupConfigError(
                ("source", given[1]),
                f"source sets {' and '.join(given)}; they are three ways to name the inputs",
                "keep one: `assets` (a list), `select` (an asset selection) or "
                "`all_writers: true` (every ingest asset writing this table)",
            )

    def source_keys(self) -> tuple[dg.AssetKey, ...]:
        """The ingest assets the narrowest rollup reads, as the YAML's rule resolved at load."""
        if self._sources is not None:
            return self._sources.keys
        if self.source.select is not None or self.source.all_writers:
            raise RollupConfigError(
                ("source", "select" if self.source.select is not None else "all_writers"),
                "a rule is resolved over the project's ingest components, and this component "
                "was built outside a defs folder",
                "load it from a defs folder (dg, ComponentTree), or list source.assets",
            )
        return tuple(dg.AssetKey.from_user_string(k) for k in self.source.assets)

    def rollup_partitions(self) -> Partitions:
        """The YAML's partitions, else those of the ingest components writing source.assets."""
        sources = self._sources
        if self.partitions is not None:
            parsed = self.partitions.parsed(aligned=True)
            if sources is not None:
                check_same_partitions(sources, parsed)
            return parsed
        if sources is None or sources.partitions is None:
            raise RollupConfigError(
                ("partitions",),
                "`partitions` is left out and no ingest component of the project writes "
                "source.assets",
                "set `partitions` (start and granularity), or list the ingest assets in "
                "source.assets",
            )
        parsed = sources.partitions
        require_aligned(parsed.start, parsed.granularity, ("partitions",), parsed.start.isoformat())
        return parsed

    def backfill_policy(self) -> dg.BackfillPolicy:
        """One run per backfill (sliced inside), or `backfill_partitions_per_run` per run."""
        per_run = self.backfill_partitions_per_run
        if per_run is None:
            return dg.BackfillPolicy.single_run()
        if not 1 <= per_run <= 10_000:
            raise RollupConfigError(
                ("backfill_partitions_per_run",),
                f"{per_run} is not between 1 and 10000",
                "leave it out for one run per backfill, or give a partition count like 24",
            )
        return dg.BackfillPolicy.multi_run(per_run)

    def partitions_def(self) -> dg.TimeWindowPartitionsDefinition:
        """The ingest component's partitions: same start, same granularity, UTC."""
        return self.rollup_plan().partitions.definition()

    # -- asset graph -----------------------------------------------------------------------------

    def get_asset_spec(self, rollup: Rollup) -> dg.AssetSpec:
        """The asset of one rollup; `translation` is applied on top of these defaults."""
        if rollup.name not in self._specs:
            self._specs[rollup.name] = self._build_asset_spec(rollup)
        return self._specs[rollup.name]

    def _build_asset_spec(self, rollup: Rollup) -> dg.AssetSpec:
        plan = self.rollup_plan()
        if rollup.base is None:
            deps = list(self.source_keys())
            reads = f"{plan.source}"
        else:
            deps = [self.get_asset_spec(rollup.base).key]
            reads = q.qualified_name(plan, rollup.base)
        # Keys never contain the target schema: it changes per deployment (schema_for).
        spec = dg.AssetSpec(
            key=dg.AssetKey(["rollups", rollup.name]),
            deps=deps,
            description=(
                f"{rollup.width_text} rollup ({', '.join(rollup.columns)}) per "
                f"{plan.source.signal_column}, from {reads}."
            ),
            partitions_def=self.partitions_def(),
            automation_condition=_EAGER,
            group_name="rollups",
            kinds={"timescaledb", "postgres"},
            metadata={
                "dagster/table_name": q.qualified_name(plan, rollup),
                "bucket_width": rollup.width_text,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(BUCKET_COLUMN, "timestamptz"),
                        dg.TableColumn(plan.source.signal_column, "integer"),
                        *(
                            dg.TableColumn(c, "bigint" if c == "count" else "double precision")
                            for c in rollup.columns
                        ),
                    ]
                ),
            },
        )
        return self.translation(spec, rollup) if self.translation else spec

    def get_check_specs(self, rollup: Rollup, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        return checks.check_specs(rollup, key, str(self.rollup_plan().source))

    @property
    def op_name(self) -> str:
        plan = self.rollup_plan()
        raw = f"{plan.target_schema}__{self.target.name_prefix}_rollups"
        return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in raw)

    def resolve_inputs(self, context: dg.ComponentLoadContext) -> None:
        """Resolve source.assets / select / all_writers over the project's ingest components.

        Runs when definitions are built, once every component has loaded (no server, no second
        walk of the defs folder); errors point at the YAML line like load errors.
        """
        src = self.source
        own = self.partitions.parsed(aligned=True) if self.partitions else None
        if self._load_context is None:
            return  # built from Python, not a defs folder: source.assets as listed
        try:
            self._sources = resolve_sources(context, src, f"{src.schema_name}.{src.table}", own)
            self.rollup_partitions()
            self.rollup_plan()
        except SettingError as exc:
            located = self._load_context or context
            raise exc.located(yaml_location(located, exc.path, exc.problem)) from None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        self.resolve_inputs(context)
        plan = self.rollup_plan()
        specs = [self.get_asset_spec(r) for r in plan.rollups]
        check_specs = [
            c
            for rollup, spec in zip(plan.rollups, specs, strict=True)
            for c in self.get_check_specs(rollup, spec.key)
        ]
        component = self

        @dg.multi_asset(
            name=self.op_name,
            specs=specs,
            check_specs=check_specs,
            can_subset=True,
            partitions_def=self.partitions_def(),
            backfill_policy=self.backfill_policy(),
        )
        def _rollups(
            context: dg.AssetExecutionContext, warehouse: WarehouseResource
        ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
            yield from component.execute(context, warehouse)

        return dg.Definitions(assets=[_rollups])

    # -- runtime ---------------------------------------------------------------------------------

    def open_engine(self, warehouse: WarehouseResource, log: Any = None) -> RollupEngine:
        """TimescaleDB continuous aggregates when the extension is installed, else tables."""
        with warehouse.connection() as conn:
            version = has_timescaledb(conn)
        if version:
            return TimescaleEngine(self.rollup_plan(), warehouse, version, log)
        return PostgresEngine(self.rollup_plan(), warehouse, log)

    def execute(
        self, context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Bring the rollups in line with YAML, refresh the partition's window, run checks."""
        plan = self.rollup_plan()
        keys = {r.name: self.get_asset_spec(r).key for r in plan.rollups}
        selected = [r for r in plan.rollups if keys[r.name] in context.selected_asset_keys]
        selected_checks = context.selected_asset_check_keys
        engine = self.open_engine(warehouse, context.log)
        partition: Window | None = None
        if context.has_partition_key or context.has_partition_key_range:
            time_window = context.partition_time_window
            partition = Window(time_window.start, time_window.end)
        elif selected:
            raise dg.Failure(
                "rollups are refreshed one partition (or partition range) at a time; "
                "launch the run for a partition"
            )

        prepared = None
        if selected:
            prepared = engine.prepare()
            for change in prepared.policy_changes:
                context.log.info(f"Applied: {change}")
            if prepared.history:
                engine.refresh_history(prepared.history)
        outcomes = (
            {r.name: engine.refresh_window(r, partition) for r in selected} if partition else {}
        )
        deleted = engine.enforce_retention() if selected else {}

        for rollup in plan.rollups:
            key = keys[rollup.name]
            outcome = outcomes.get(rollup.name)
            if outcome is not None:
                if outcome.skipped:
                    context.log.warning(f"{rollup.name}: {outcome.skipped}")
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={
                        "engine": engine.name,
                        "relation": q.qualified_name(plan, rollup),
                        "window": str(outcome.window),
                        "partition_window": str(partition),
                        "rows_in_window": outcome.rows,
                        "dagster/row_count": outcome.rows,
                        "refresh_seconds": round(outcome.seconds, 4),
                        "slices": outcome.slices,
                        "created": prepared is not None and rollup.name in prepared.created,
                        "rebuilt": prepared is not None and rollup.name in prepared.rebuilt,
                        "retention_deleted_rows": deleted.get(rollup.name, 0),
                        **({"skipped": outcome.skipped} if outcome.skipped else {}),
                    },
                )
            yield from self.run_checks(engine, rollup, key, partition, selected_checks)

    def run_checks(
        self,
        engine: RollupEngine,
        rollup: Rollup,
        key: dg.AssetKey,
        partition: Window | None,
        selected: AbstractSet[dg.AssetCheckKey],
    ) -> Iterator[dg.AssetCheckResult]:
        """Checks of one rollup; without a partition they look at its newest partition."""
        if dg.AssetCheckKey(key, checks.MATCHES_SOURCE) in selected:
            if partition is None:
                partition = checks.newest_partition(engine, rollup)
            window = partition.widened_to(rollup.width) if partition else None
            yield checks.check_matches_source(engine, rollup, window, key)
        if dg.AssetCheckKey(key, checks.FRESHNESS) in selected:
            yield checks.check_freshness(engine, rollup, key, self.rollup_plan().freshness_max_lag)
        if dg.AssetCheckKey(key, checks.MATCHES_YAML) in selected:
            yield checks.check_matches_yaml(engine, rollup, key)


_PLAN_FIELDS = (
    "target",
    "buckets",
    "aggregates",
    "materialized_only",
    "refresh",
    "columnstore",
    "retention",
    "on_definition_change",
    "checks",
)
