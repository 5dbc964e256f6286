"""The `RollupPlan` a `TimescaleAggregateComponent`'s YAML fields describe (no database)."""

from __future__ import annotations

from collections.abc import Sequence

from data_platform.lib.timescale import specs
from data_platform.lib.timescale.plan import (
    AGGREGATES,
    BUCKET_COLUMN,
    BucketInput,
    ColumnstorePolicy,
    RefreshPolicy,
    RollupConfigError,
    RollupPlan,
    SourceTable,
    build_hierarchy,
    check_identifier,
    check_policies,
    resolve_aggregates,
)
from data_platform.lib.timing.durations import parse_duration, short_suffix
from data_platform.lib.timing.errors import YamlPath
from data_platform.lib.timing.partitions import Partitions


def yaml_rollup_plan(
    *,
    source_spec: specs.SourceSpec,
    target: specs.TargetSpec,
    partitions: Partitions,
    buckets: Sequence[specs.BucketSpec],
    aggregates: Sequence[str],
    materialized_only: bool,
    refresh: specs.RefreshSpec | None,
    columnstore: specs.ColumnstoreSpec | None,
    retention: specs.RetentionSpec | None,
    on_definition_change: str,
    checks: specs.ChecksSpec | None,
) -> RollupPlan:
    """The rollup family the YAML fields describe; raises RollupConfigError naming the field."""
    src = source_spec
    source = SourceTable(
        schema=check_identifier(("source", "schema"), src.schema_name, "schema"),
        table=check_identifier(("source", "table"), src.table, "table"),
        time_column=check_identifier(("source", "time_column"), src.time_column, "column"),
        signal_column=check_identifier(("source", "signal_column"), src.signal_column, "column"),
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
    target_schema = check_identifier(("target", "schema"), target.schema_name, "schema")
    prefix = check_identifier(("target", "name_prefix"), target.name_prefix, "prefix")
    on_change = on_definition_change
    if on_change not in ("fail", "rebuild"):
        raise RollupConfigError(
            ("on_definition_change",),
            f"{on_change!r} is not fail or rebuild",
            "use `fail` (stop on a changed definition) or `rebuild` (drop and rebuild)",
        )
    columns, _ = resolve_aggregates(("aggregates",), aggregates)

    default_refresh = refresh_policy(("refresh",), refresh) if refresh else None
    retention = retention or specs.RetentionSpec()
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
    for index, bucket in enumerate(buckets):
        width = parse_duration(bucket.width, ("buckets", index, "width"))
        suffix = bucket.name if bucket.name is not None else short_suffix(width)
        if not suffix or not all(ch.isalnum() or ch == "_" for ch in suffix):
            raise RollupConfigError(
                ("buckets", index, "name"),
                f"name {suffix!r} is not a plain name suffix",
                "use letters, digits and underscores, e.g. 1m or hourly",
            )
        bucket_refresh = (
            refresh_policy(("buckets", index, "refresh"), bucket.refresh)
            if bucket.refresh is not None
            else default_refresh
        )
        if bucket.drop_after is not None:
            drop_path: YamlPath = ("buckets", index, "drop_after")
            drop = parse_duration(bucket.drop_after, drop_path)
        else:
            drop_path, drop = ("retention", "drop_after"), default_drop
        inputs.append(BucketInput(index, width, suffix, bucket_refresh, drop, drop_path))
    rollups = build_hierarchy(prefix, inputs, columns)

    stored_columnstore = columnstore_policy(columnstore, source, columns) if columnstore else None
    lag_text = checks.freshness_max_lag if checks else None
    max_lag = (
        parse_duration(lag_text, ("checks", "freshness_max_lag"))
        if lag_text is not None
        else partitions.width
    )
    plan = RollupPlan(
        source=source,
        target_schema=target_schema,
        rollups=rollups,
        materialized_only=materialized_only,
        columnstore=stored_columnstore,
        raw_drop_after=raw_drop,
        partitions=partitions,
        on_definition_change=on_change,
        freshness_max_lag=max_lag,
    )
    check_policies(plan)
    return plan


def refresh_policy(path: YamlPath, spec: specs.RefreshSpec) -> RefreshPolicy:
    return RefreshPolicy(
        start_offset=parse_duration(spec.start_offset, (*path, "start_offset")),
        end_offset=parse_duration(spec.end_offset, (*path, "end_offset"), allow_zero=True),
        schedule_interval=parse_duration(spec.schedule_interval, (*path, "schedule_interval")),
        path=path,
    )


def columnstore_policy(
    spec: specs.ColumnstoreSpec, source: SourceTable, columns: Sequence[str]
) -> ColumnstorePolicy:
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
        if not words or len(words) > 2 or direction not in ("ASC", "DESC") or words[0] not in known:
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
