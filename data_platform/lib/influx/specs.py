"""YAML-facing settings of `InfluxIngestComponent`, validated when definitions load."""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from data_platform.lib.influx.reader.settings import check_database, check_url
from data_platform.lib.timing.durations import parse_duration
from data_platform.lib.timing.partitions import PartitionsSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


Number = TypeVar("Number", int, float)


def within(value: Number, low: float | None, high: float | None, setting: str) -> Number:
    """`value` when low <= value <= high, else an error naming the setting and the range."""
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"between {low:,} and {high:,}"
        else:
            bounds = f"at least {low:,}" if low is not None else f"at most {high:,}"
        raise ValueError(f"{setting} is {value:,}; set it {bounds}")
    return value


def _version_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class InfluxServerSpec(dg.Resolvable, dg.Model):
    """Where and how to read an InfluxDB server through its v1 `/query` API."""

    # Values here may be secrets by mistake (credentials in INFLUX_URL, a password rendered
    # into `password_env`): validation errors must not repeat them.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(
        description="Base URL of the server (1.x, 2.x or 3.x): scheme, host and port.",
        examples=["http://localhost:8086", "{{ env.INFLUX_URL or 'http://localhost:8086' }}"],
    )
    database: str = Field(
        description="1.x database, 2.x bucket (through its DBRP mapping) or 3.x database.",
        examples=["plant_north", "{{ env.INFLUX_DATABASE or 'plant_north' }}"],
    )
    retention_policy: str | None = Field(
        default=None,
        description="Retention policy to read (1.x/2.x DBRP); the database default when unset.",
        examples=["autogen"],
    )
    username_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the user name (basic auth), "
        "read at run time.",
        examples=["INFLUX_USERNAME"],
    )
    password_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the password, read at run time.",
        examples=["INFLUX_PASSWORD"],
    )
    token_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding an API token (2.x/3.x), read at "
        "run time. Used instead of user name and password.",
        examples=["INFLUX_TOKEN"],
    )
    format: Literal["auto", "msgpack", "csv", "json"] = Field(
        default="auto",
        description="Response format; `auto` asks for msgpack and falls back to CSV, then JSON.",
    )
    version: Annotated[
        Literal["auto", "1", "2", "3"],
        # YAML reads `version: 3` as a number; the YAML schema takes both, the spec a string.
        dg.Resolver(lambda _ctx, value: _version_text(value), model_field_type=str | int),
    ] = Field(
        default="auto",
        description="The server's InfluxDB generation: `auto` asks `/ping` once per run; `1`, "
        "`2` or `3` forces it (what the reader sends depends on it: 3.x has no SHOW SERIES, "
        "its msgpack differs, a token goes as `Bearer` on 3.x and `Token` on 2.x).",
        examples=["auto", "3"],
    )
    discovery_lookback: str = Field(
        default="7d",
        description="How far back from a measurement's newest point the registry looks for "
        "the signals that carry values (one `last(*)` per series, so the cost is bounded by "
        "it, not by the history). A signal silent for longer keeps its registry row.",
        examples=["7d", "30d", "12h"],
    )
    chunk_size: int = Field(
        default=10_000,
        description="Points per streamed chunk: memory stays bounded by it, not by the window.",
    )
    timeout_seconds: float = Field(
        default=300.0, description="Read timeout of one query, in seconds."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_cert: str | None = Field(
        default=None, description="Path of a CA bundle for a server with a private CA."
    )
    pool: str | None = Field(
        default=None,
        description="Dagster concurrency pool that caps simultaneous queries to this server "
        "(default: one pool per server host and port).",
        examples=["influx_plant_north"],
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        value = _version_text(value)
        if value not in ("auto", "1", "2", "3"):
            raise ValueError(f"influx.version is {value!r}; write auto (ask the server), 1, 2 or 3")
        return value

    @field_validator("discovery_lookback")
    @classmethod
    def _lookback(cls, value: str) -> str:
        parse_duration(value, ("influx", "discovery_lookback"))
        return value

    @field_validator("chunk_size")
    @classmethod
    def _chunk_size(cls, value: int) -> int:
        return within(value, 100, 1_000_000, "influx.chunk_size")

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout(cls, value: float) -> float:
        return within(value, 0.001, None, "influx.timeout_seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        return check_database(value)

    @field_validator("username_env", "password_env", "token_env")
    @classmethod
    def _env_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            # The value is not repeated: it may be the secret itself.
            raise ValueError(
                f"influx.{info.field_name} is not an environment variable name: the *_env "
                "settings take the variable's NAME (e.g. INFLUX_PASSWORD), never the secret "
                "itself"
            )
        return value

    @model_validator(mode="after")
    def _auth(self) -> InfluxServerSpec:
        if self.token_env and (self.username_env or self.password_env):
            raise ValueError("influx: set either token_env or username_env/password_env, not both")
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("influx: username_env and password_env go together; set both")
        return self


class FilesSpec(dg.Resolvable, dg.Model):
    """InfluxDB line-protocol export files read instead of a server."""

    paths: list[str] = Field(
        description="Files or glob patterns (`.lp`, `.lp.gz`), absolute or relative to the "
        "project root.",
        examples=[["exports/*.lp.gz"]],
    )
    precision: Literal["ns", "us", "ms", "s"] = Field(
        default="ns", description="Timestamp precision the files were written with."
    )
    on_error: Literal["fail", "skip"] = Field(
        default="fail",
        description="`fail` stops at a malformed line (naming file and line); `skip` counts it.",
    )

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("files.paths is empty; list at least one file or glob pattern")
        return value


class MeasurementSpec(dg.Resolvable, dg.Model):
    """One measurement to ingest, optionally filtered."""

    name: str = Field(description="Measurement name as in InfluxDB.", examples=["inverter"])
    asset_name: str | None = Field(
        default=None,
        description="Last part of the asset key (default: the name made a safe identifier).",
        examples=["inverter_power"],
    )
    fields: list[str] | None = Field(
        default=None, description="Fields to ingest (default: all).", examples=[["p_ac", "temp"]]
    )
    tags: dict[str, list[str]] | None = Field(
        default=None,
        description="Keep only series whose tag has one of these values.",
        examples=[{"site": ["north", "south"]}],
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("measurements[].name is empty; name an InfluxDB measurement")
        return value

    @field_validator("asset_name")
    @classmethod
    def _asset_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9_]+$", value):
            raise ValueError(
                f"measurements[].asset_name {value!r}: use letters, digits and underscores"
            )
        return value


class TargetSpec(dg.Resolvable, dg.Model):
    """Where the values land in the warehouse."""

    schema_: str = Field(
        default="raw",
        alias="schema",
        description="Target schema; use `{{ schema_for('raw') }}` for per-deployment names.",
        examples=["{{ schema_for('raw') }}"],
    )
    table: str = Field(default="influx_hist", description="Narrow value table.")
    registry_table: str = Field(default="influx_tag", description="Signal registry table.")
    chunk_interval: str = Field(
        default="7 days",
        description="TimescaleDB hypertable chunk interval (ignored on plain PostgreSQL).",
        examples=["1 day", "7 days", "1w"],
    )

    @field_validator("schema_", "table", "registry_table")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not value or len(value.encode()) > 63 or "\x00" in value:
            raise ValueError(
                f"target: {value!r} is not a usable PostgreSQL name (1 to 63 bytes, no NUL)"
            )
        return value


class IngestPartitionsSpec(PartitionsSpec):
    """Time partitions: each partition is one window of the source, replaced atomically."""

    end_offset: int = Field(
        default=0,
        description="Extra partitions past the last closed one (1 = the open window is a "
        "partition and gets re-read until it closes).",
    )
    lateness: str | None = Field(
        default=None,
        description="Also re-read this much before each run's first window, for late points.",
        examples=["2h", "1 hour 30 minutes"],
    )
    backfill_window: str | None = Field(
        default=None,
        description="A run of several partitions (a backfill) replaces them in windows of up "
        "to this long, each in one transaction; a whole number of partitions (default: 1 day). "
        "The partition width replaces one partition at a time.",
        examples=["1 day", "6h"],
    )

    @field_validator("end_offset")
    @classmethod
    def _end_offset(cls, value: int) -> int:
        return within(value, 0, 24, "partitions.end_offset")


class ChecksSpec(dg.Resolvable, dg.Model):
    """Thresholds of the source's asset checks."""

    max_lag: str | None = Field(
        default=None,
        description="Newest point older than this fails the lag check (default: two windows "
        "plus lateness).",
        examples=["2h"],
    )
    gap_factor: float = Field(
        default=5.0,
        description="A series silent for longer than this many times its usual interval (the "
        "mean interval between its points in the window, its longest silence left out) is a gap.",
    )
    min_gap: str = Field(
        default="5m", description="Silences shorter than this are never reported as gaps."
    )
    blocking: bool = Field(
        default=False,
        description="A failed reconciliation blocks downstream rollups (ERROR severity).",
    )

    @field_validator("gap_factor")
    @classmethod
    def _gap_factor(cls, value: float) -> float:
        if value <= 1:
            raise ValueError(f"checks.gap_factor is {value}; set it above 1 (e.g. 5)")
        return value


class AutomationSpec(dg.Resolvable, dg.Model):
    """When the platform materializes the source by itself."""

    ingest: Literal["cadence", "none"] = Field(
        default="cadence",
        description="`cadence`: each window is ingested when it closes (declarative "
        "automation); `none`: only by hand, schedule or backfill.",
    )
    registry_cron: str | None = Field(
        default="0 3 * * *", description="Cron of the registry refresh; null to disable."
    )
