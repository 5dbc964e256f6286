"""YAML-facing settings of `TimescaleAggregateComponent`; the plan (`plan.py`) validates them."""

from typing import Annotated, Any

import dagster as dg
from pydantic import Field

IntervalText = str | int
"""PostgreSQL interval text; YAML may read a bare `0` as a number."""


def doc(description: str, examples: list[Any]) -> Any:
    """Field documentation for the YAML schema (kept for fields with defaults too)."""
    return dg.Resolver.default(description=description, examples=examples)


class SourceSpec(dg.Resolvable, dg.Model):
    """The raw table the rollups read and the ingest assets that write it."""

    schema_name: Annotated[
        str,
        doc("Schema of the raw table.", ["plant_a"]),
        Field(alias="schema"),
    ]
    table: Annotated[str, doc("Raw table name.", ["influx_hist"])] = "influx_hist"
    time_column: Annotated[str, doc("Timestamp column (timestamptz).", ["ts"])] = "ts"
    signal_column: Annotated[
        str, doc("Column identifying the signal; kept as a rollup column.", ["tag_id"])
    ] = "tag_id"
    value_column: Annotated[
        str, doc("Numeric value column; rows where it is NULL are left out.", ["value"])
    ] = "value"
    assets: Annotated[
        list[str],
        doc(
            "Asset keys of the ingest assets that write the raw table; the narrowest rollup "
            "depends on them. Or leave it out and set `select` or `all_writers`.",
            [["plant_a/influx/power"]],
        ),
    ] = []
    select: Annotated[
        str | None,
        doc(
            "The ingest assets as a Dagster asset selection (kind, group, tag, owner, key "
            "pattern), resolved over the project's ingest assets when definitions load; every "
            "match must write this table. Registry assets are never inputs.",
            ["kind:influxdb and group:plant_north", "key:plant_*/*", "tag:site=north"],
        ),
    ] = None
    all_writers: Annotated[
        bool,
        doc(
            "true: every ingest asset of the project that writes this schema.table, so a "
            "dropped ingest YAML writing it joins the rollups with no other edit.",
            [True],
        ),
    ] = False


class TargetSpec(dg.Resolvable, dg.Model):
    """Where the rollups are created."""

    schema_name: Annotated[
        str,
        doc("Schema of the rollup views or tables (created when missing).", ["plant_a"]),
        Field(alias="schema"),
    ]
    name_prefix: Annotated[
        str,
        doc(
            "Rollup names are `<name_prefix>_<bucket name>`, e.g. plant_a_power_1m.",
            ["plant_a_power"],
        ),
    ]


class RefreshSpec(dg.Resolvable, dg.Model):
    """A TimescaleDB refresh policy (`add_continuous_aggregate_policy`)."""

    start_offset: Annotated[
        IntervalText,
        doc(
            "Start of the refreshed window, back from now. Must be at least end_offset + 2 "
            "bucket widths.",
            ["3 hours"],
        ),
    ]
    end_offset: Annotated[
        IntervalText,
        doc("End of the refreshed window, back from now ('0' for now).", ["1 minute"]),
    ]
    schedule_interval: Annotated[IntervalText, doc("How often the policy runs.", ["30 minutes"])]


class BucketSpec(dg.Resolvable, dg.Model):
    """One bucket width: one rollup view or table and one asset."""

    width: Annotated[
        IntervalText,
        doc(
            "Bucket width as PostgreSQL interval text ('1 minute', '5 minutes', '1 hour', "
            "'1 day'; shorthands '15m', '1h', '1d'). A wider bucket is built from the nearest "
            "narrower one that divides it.",
            ["1 minute"],
        ),
    ]
    name: Annotated[
        str | None,
        doc("Name suffix; defaults to the width in short form (1m, 5m, 1h, 1d).", ["1m"]),
    ] = None
    refresh: Annotated[
        RefreshSpec | None,
        doc(
            "Refresh policy for this bucket, replacing the top-level `refresh`.",
            [{"start_offset": "3 days", "end_offset": "1 hour", "schedule_interval": "1 hour"}],
        ),
    ] = None
    drop_after: Annotated[
        IntervalText | None,
        doc("Retention for this bucket, replacing retention.drop_after.", ["30 days"]),
    ] = None


class ColumnstoreSpec(dg.Resolvable, dg.Model):
    """Columnstore (compression on TimescaleDB < 2.18) for the rollups."""

    after: Annotated[
        IntervalText,
        doc(
            "Convert chunks older than this (TimescaleDB before 2.19: above every refresh "
            "start_offset).",
            ["7 days"],
        ),
    ]
    segmentby: Annotated[
        list[str] | None,
        doc("Segment-by columns; defaults to the signal column.", [["tag_id"]]),
    ] = None
    orderby: Annotated[
        str | None,
        doc("Order-by within segments; defaults to 'bucket DESC'.", ["bucket DESC"]),
    ] = None


class RetentionSpec(dg.Resolvable, dg.Model):
    """How long rollups (and optionally the raw table) keep data."""

    drop_after: Annotated[
        IntervalText | None,
        doc("Drop rollup data older than this (every bucket without its own).", ["365 days"]),
    ] = None
    raw_drop_after: Annotated[
        IntervalText | None,
        doc(
            "Drop raw data older than this. Must cover every refresh start_offset of rollups "
            "reading the raw table. Left out: the raw table's retention is not touched.",
            ["30 days"],
        ),
    ] = None


class ChecksSpec(dg.Resolvable, dg.Model):
    """Thresholds of the rollup asset checks."""

    freshness_max_lag: Annotated[
        IntervalText | None,
        doc(
            "How far the newest source point may lie beyond the newest bucket's end before the "
            "freshness check fails; defaults to one partition.",
            ["2 hours"],
        ),
    ] = None
