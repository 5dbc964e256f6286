"""`dg scaffold defs data_platform.lib.InfluxIngestComponent <path>` writes a commented defs.yaml."""

from __future__ import annotations

import re

import dagster as dg
from pydantic import BaseModel, Field

DEFS_YAML = """\
# An InfluxDB source. Assets: <name>/influx_tags (signal registry) and one partitioned ingest
# asset per measurement. Works as soon as the variables of .env.example are set.
type: data_platform.lib.InfluxIngestComponent
template_vars_module: data_platform.utils.environment_helpers

attributes:
  # Source name: asset key prefix, registry `source`, and what error messages call it.
  name: {name}

  influx:
    # The server's v1 /query API (InfluxDB 1.x, 2.x with a DBRP mapping, 3.x).
    url: "{{{{ env.INFLUX_URL or 'http://localhost:8086' }}}}"
    database: "{{{{ env.INFLUX_DATABASE or '{name}' }}}}"
    # Secrets are read at run time from these variables (names, not values); leave them
    # unset for a server without auth, or use token_env: INFLUX_TOKEN for 2.x/3.x.
    # username_env: INFLUX_USERNAME
    # password_env: INFLUX_PASSWORD

  # Which measurements to ingest, one asset each (omit for every measurement, as one asset).
  # measurements:
  #   - name: inverter
  #     fields: [active_power, temperature]
  #     tags: {{site: [north]}}

  target:
    # Per-deployment schema: raw in prod, raw_pr_<n> in branches, raw_<user> locally.
    schema: "{{{{ schema_for('raw') }}}}"
    table: influx_hist
    registry_table: influx_tag

  partitions:
    start: "{start}"
    granularity: hourly      # 15min | hourly | daily
    end_offset: 0            # 1 = also ingest the open window (re-read until it closes)
    lateness: 15m            # re-read this much before each run's first window

  # Stored tag_name of each signal (default: <source>/<series key>.<field>).
  # signal_name: "{{{{ tags.site }}}}.{{{{ tags.device }}}}.{{{{ field }}}}"

  # units: {{active_power: kW}}

  checks:
    gap_factor: 5
    min_gap: 5m
    # max_lag: 2h
"""


class InfluxIngestScaffoldParams(BaseModel):
    name: str | None = Field(default=None, description="Source name (default: the folder name).")
    start: str = Field(default="2024-01-01", description="First partition (UTC).")


class InfluxIngestScaffolder(dg.Scaffolder[InfluxIngestScaffoldParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[InfluxIngestScaffoldParams]:
        return InfluxIngestScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[InfluxIngestScaffoldParams]) -> None:
        name = request.params.name or re.sub(r"[^A-Za-z0-9_]", "_", request.target_path.name)
        if not name or not name[0].isalpha():
            name = f"source_{name}"
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            DEFS_YAML.format(name=name, start=request.params.start)
        )
