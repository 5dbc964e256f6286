"""`TimescaleAggregateComponent`: partition-aligned rollups of a raw time-series table."""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations.
from collections.abc import Iterator, Sequence
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
    BucketInput,
    ColumnstorePolicy,
    RefreshPolicy,
    Rollup,
    RollupConfigError,
    RollupPlan,
    SourceTable,
    build_hierarchy,
    check_identifier,
    check_policies,
    resolve_aggregates,
)
from data_platform.lib.timescale.postgres import PostgresEngine
from data_platform.lib.timescale.scaffolder import TimescaleAggregateScaffolder
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
from data_platform.lib.timing.durations import parse_duration, short_suffix
from data_platform.lib.timing.errors import SettingError, YamlPath
from data_platform.lib.timing.partitions import Partitions, PartitionsSpec, require_aligned
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource, has_timescaledb
from data_platform.lib.yaml_attributes import YamlAttributes, yaml_location


def sources_partitions(
    context: dg.ComponentLoadContext, assets: Sequence[str]
) -> Partitions | None:
    """The partitions of the ingest components that write `assets` (read from YAML, no server).

    None when no ingest component writes them; an error naming both files when two differ.
    """
    from data_platform.lib.influx.component import InfluxIngestComponent

    wanted = {dg.AssetKey.from_user_string(k) for k in assets}
    found: dict[Partitions, str] = {}
    for ingest in context.component_tree.get_all_components(of_type=InfluxIngestComponent):
        if wanted & ingest.asset_keys():
            partitions = ingest.ingest_plan().partitions
            found.setdefault(Partitions(partitions.start, partitions.granularity), ingest.defs_file)
    if len(found) > 1:
        (first, first_file), (second, second_file) = list(found.items())[:2]
        raise RollupConfigError(
            ("partitions",),
            "`partitions` is left out and the ingest components writing source.assets differ: "
            f"{first_file} starts {first.start.isoformat()} {first.granularity}, {second_file} "
            f"starts {second.start.isoformat()} {second.granularity}",
            "give those ingest components the same partitions.start and granularity, or set "
            "`partitions` here",
        )
    return next(iter(found), None)


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
    translation: Annotated[TranslationFn[Rollup] | None, _translation_resolver] = None

    _plan: RollupPlan | None = PrivateAttr(default=None)
    _source_partitions: Partitions | None = PrivateAttr(default=None)
    _specs: dict[str, dg.AssetSpec] = PrivateAttr(default_factory=dict)

    @classmethod
    def load(
        cls, attributes: Any, context: dg.ComponentLoadContext
    ) -> "TimescaleAggregateComponent":
        """Load from YAML and validate, pointing errors at the offending line of defs.yaml."""
        try:
            component = super().load(attributes, context)
            if component.partitions is None:
                component._source_partitions = sources_partitions(context, component.source.assets)
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
            self._plan = self._build_plan()
        return self._plan

    def rollup_partitions(self) -> Partitions:
        """The YAML's partitions, else those of the ingest components writing source.assets."""
        if self.partitions is not None:
            return self.partitions.parsed(aligned=True)
        if self._source_partitions is None:
            raise RollupConfigError(
                ("partitions",),
                "`partitions` is left out and no ingest component of the project writes "
                "source.assets",
                "set `partitions` (start and granularity), or list the ingest assets in "
                "source.assets",
            )
        parsed = self._source_partitions
        require_aligned(parsed.start, parsed.granularity, ("partitions",), parsed.start.isoformat())
        return parsed

    def _build_plan(self) -> RollupPlan:
        src = self.source
        source = SourceTable(
            schema=check_identifier(("source", "schema"), src.schema_name, "schema"),
            table=check_identifier(("source", "table"), src.table, "table"),
            time_column=check_identifier(("source", "time_column"), src.time_column, "column"),
            signal_column=check_identifier(
                ("source", "signal_column"), src.signal_column, "column"
            ),
            value_column=check_identifier(("source", "value_column"), src.value_column, "column"),
        )
        if source.signal_column in (BUCKET_COLUMN, *AGGREGATES):
            raise RollupConfigError(
                ("source", "signal_column"),
                f"{source.signal_column!r} collides with a rollup column name",
                f"rollups store `{BUCKET_COLUMN}` and the aggregates under their own names; "
                "rename the signal column",
            )
        for index, key in enumerate(src.assets):
            if not str(key).strip():
                raise RollupConfigError(
                    ("source", "assets", index),
                    "empty asset key",
                    "write it like plant_a/influx/power",
                )
        target_schema = check_identifier(("target", "schema"), self.target.schema_name, "schema")
        prefix = check_identifier(("target", "name_prefix"), self.target.name_prefix, "prefix")
        partitions = self.rollup_partitions()
        on_change = self.on_definition_change
        if on_change not in ("fail", "rebuild"):
            raise RollupConfigError(
                ("on_definition_change",),
                f"{on_change!r} is not fail or rebuild",
                "use `fail` (stop on a changed definition) or `rebuild` (drop and rebuild)",
            )
        columns, _ = resolve_aggregates(("aggregates",), self.aggregates)

        default_refresh = self._refresh_policy(("refresh",), self.refresh) if self.refresh else None
        retention = self.retention or RetentionSpec()
        default_drop = (
            parse_duration(retention.drop_after, ("retention", "drop_after"))
            if retention.drop_after is not None
            else None
        )
        raw_drop = (
            parse_duration(retention.raw_drop_after, ("retention", "raw_drop_after"))
            if retention.raw_drop_after is not None
            else None
        )
        inputs: list[BucketInput] = []
        for index, bucket in enumerate(self.buckets):
            width = parse_duration(bucket.width, ("buckets", index, "width"))
            suffix = bucket.name if bucket.name is not None else short_suffix(width)
            if not suffix or not all(ch.isalnum() or ch == "_" for ch in suffix):
                raise RollupConfigError(
                    ("buckets", index, "name"),
                    f"name {suffix!r} is not a plain name suffix",
                    "use letters, digits and underscores, e.g. 1m or hourly",
                )
            refresh = (
                self._refresh_policy(("buckets", index, "refresh"), bucket.refresh)
                if bucket.refresh is not None
                else default_refresh
            )
            if bucket.drop_after is not None:
                drop_path: YamlPath = ("buckets", index, "drop_after")
                drop = parse_duration(bucket.drop_after, drop_path)
            else:
                drop_path, drop = ("retention", "drop_after"), default_drop
            inputs.append(BucketInput(index, width, suffix, refresh, drop, drop_path))
        rollups = build_hierarchy(prefix, inputs, columns)

        columnstore = self._columnstore_policy(source, columns) if self.columnstore else None
        lag_text = self.checks.freshness_max_lag if self.checks else None
        max_lag = (
            parse_duration(lag_text, ("checks", "freshness_max_lag"))
            if lag_text is not None
            else partitions.width
        )
        plan = RollupPlan(
            source=source,
            target_schema=target_schema,
            rollups=rollups,
            materialized_only=self.materialized_only,
            columnstore=columnstore,
            raw_drop_after=raw_drop,
            partitions=partitions,
            on_definition_change=on_change,
            freshness_max_lag=max_lag,
        )
        check_policies(plan)
        return plan

    @staticmethod
    def _refresh_policy(path: YamlPath, spec: RefreshSpec) -> RefreshPolicy:
        return RefreshPolicy(
            start_offset=parse_duration(spec.start_offset, (*path, "start_offset")),
            end_offset=parse_duration(spec.end_offset, (*path, "end_offset"), allow_zero=True),
            schedule_interval=parse_duration(spec.schedule_interval, (*path, "schedule_interval")),
            path=path,
        )

    def _columnstore_policy(self, source: SourceTable, columns: Sequence[str]) -> ColumnstorePolicy:
        spec = self.columnstore
        assert spec is not None
        known = (BUCKET_COLUMN, source.signal_column, *columns)
        segmentby = tuple(spec.segmentby) if spec.segmentby is not None else (source.signal_column,)
        for index, column in enumerate(segmentby):
            if column not in known:
                raise RollupConfigError(
                    ("columnstore", "segmentby", index),
                    f"{column!r} is not a rollup column",
                    f"use columns of the rollups: {', '.join(known)}",
                )
        orderby: list[tuple[str, str]] = []
        for part in (spec.orderby or f"{BUCKET_COLUMN} DESC").split(","):
            words = part.split()
            direction = words[1].upper() if len(words) == 2 else "ASC"
            if (
                not words
                or len(words) > 2
                or direction not in ("ASC", "DESC")
                or words[0] not in known
            ):
                raise RollupConfigError(
                    ("columnstore", "orderby"),
                    f"{spec.orderby!r} is not a list of `<rollup column> [ASC|DESC]`",
                    f"write it like 'bucket DESC'; rollup columns are {', '.join(known)}",
                )
            orderby.append((words[0], direction))
        return ColumnstorePolicy(
            after=parse_duration(spec.after, ("columnstore", "after")),
            segmentby=segmentby,
            orderby=tuple(orderby),
        )

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
            deps = [dg.AssetKey.from_user_string(k) for k in self.source.assets]
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

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
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
