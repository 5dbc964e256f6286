"""`dg scaffold defs data_platform.lib.TimescaleAggregateComponent <path>`: a commented defs.yaml."""

from __future__ import annotations

import json

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field

DEFS_YAML = """\
# Rollups of a raw time-series table: one partitioned asset per bucket width.
# TimescaleDB: continuous aggregates (wider buckets built on narrower ones) with policies.
# PostgreSQL: rollup tables with the same columns, maintained by each materialization.
type: {type_name}

attributes:
  # The raw table the ingest component writes, and its assets (the rollups depend on them).
  source:
    schema: {source_schema}
    table: influx_hist
    # time_column: ts
    # signal_column: tag_id
    # value_column: value
    assets: {assets}

  # Rollups are named <name_prefix>_<bucket name>, e.g. {name_prefix}_1m.
  target:
    schema: {target_schema}
    name_prefix: {name_prefix}

  # Must be the ingest component's partitions: same start, same granularity (15min, hourly,
  # daily). Each materialization refreshes that partition's window, widened to whole buckets.
  partitions:
    start: "{start}"
    granularity: hourly

  # Interval text ('1 minute', '5 minutes', '1 hour', '1 day', or 15m / 1h / 1d). Each wider
  # bucket must be a multiple of a narrower one; it is built from the nearest such one.
  buckets:
    - width: 1 minute
    - width: 1 hour
    - width: 1 day
      # A bucket can carry its own refresh policy and retention:
      # refresh: {{start_offset: 3 days, end_offset: 1 hour, schedule_interval: 1 hour}}
      # drop_after: 730 days

  # Subset of avg, min, max, count, sum, first, last (count is always stored, sum with avg).
  aggregates: [avg, min, max, count, sum, first, last]

  # TimescaleDB only: false aggregates not-yet-materialized raw data on read (real-time).
  materialized_only: true

  # fail: stop when a rollup in the warehouse was built from a different definition.
  # rebuild: drop and recreate it (and the rollups built on it), then re-materialize history.
  on_definition_change: fail

  # TimescaleDB refresh policy for every bucket without its own (window >= end + 2 buckets).
  # refresh:
  #   start_offset: 3 hours
  #   end_offset: 1 minute
  #   schedule_interval: 30 minutes

  # columnstore:
  #   after: 7 days          # before TimescaleDB 2.19: above every refresh start_offset
  #   segmentby: [tag_id]
  #   orderby: bucket DESC

  # retention:
  #   drop_after: 365 days   # rollups
  #   raw_drop_after: 30 days  # the raw table; must cover refresh start_offsets reading it

  # checks:
  #   freshness_max_lag: 2 hours

  # Asset attributes of every rollup; templates see {{{{ rollup.name }}}}, {{{{ rollup.suffix }}}}.
  # translation:
  #   key_prefix: [warehouse]
  #   group_name: rollups
"""


class TimescaleAggregateScaffoldParams(BaseModel):
    """Optional values for the scaffolded defs.yaml (`dg scaffold defs ... --json-params`)."""

    source_schema: str = Field(default="raw", description="Schema of the raw table.")
    target_schema: str = Field(default="rollups", description="Schema of the rollups.")
    name_prefix: str = Field(default="rollup", description="Prefix of the rollup names.")
    assets: list[str] = Field(default_factory=list, description="Ingest asset keys.")
    start: str = Field(default="2024-01-01", description="partitions.start of the ingest.")


class TimescaleAggregateScaffolder(dg.Scaffolder[TimescaleAggregateScaffoldParams]):
    """Writes a defs.yaml with every setting explained; it loads as written."""

    @classmethod
    def get_scaffold_params(cls) -> type[TimescaleAggregateScaffoldParams]:
        return TimescaleAggregateScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[TimescaleAggregateScaffoldParams]) -> None:
        if request.scaffold_format != "yaml":
            scaffold_component(request)
            return
        params = request.params or TimescaleAggregateScaffoldParams()
        text = DEFS_YAML.format(
            type_name=request.type_name,
            source_schema=_yaml_scalar(params.source_schema),
            target_schema=_yaml_scalar(params.target_schema),
            name_prefix=_yaml_scalar(params.name_prefix),
            assets=json.dumps(params.assets),
            start=params.start,
        )
        if request.append:
            # Appending: target_path is the existing defs.yaml.
            with request.target_path.open("a", encoding="utf-8") as f:
                f.write("---\n" + text)
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")


def _yaml_scalar(value: str) -> str:
    """Plain names stay plain; anything else is written as a JSON (= YAML) string."""
    return value if value.replace("_", "").isalnum() else json.dumps(value)
