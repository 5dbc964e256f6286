"""`TimescaleEngine`: continuous aggregates (hierarchical for wider buckets) and their policies."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from data_platform.lib.historian.locks import advisory_key, session_locks
from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.engines import (
    RelationState,
    RollupEngine,
    RollupSourceError,
    StoredDefinition,
)
from data_platform.lib.timescale.plan import Rollup, RollupPlan
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource


@dataclass(frozen=True, slots=True)
class PolicyJob:
    job_id: int
    proc_name: str
    schedule_interval: timedelta | None
    start_offset: timedelta | None
    end_offset: timedelta | None
    compress_after: timedelta | None
    drop_after: timedelta | None


class TimescaleEngine(RollupEngine):
    """Continuous aggregates (hierarchical for wider buckets) with TimescaleDB policies."""

    kind = "timescaledb"

    def __init__(
        self,
        plan: RollupPlan,
        warehouse: WarehouseResource,
        version: str,
        log: logging.Logger | Any | None = None,
    ) -> None:
        super().__init__(plan, warehouse, log)
        self.version = version

    @property
    def name(self) -> str:
        return f"timescaledb {self.version}"

    @property
    def has_columnstore_api(self) -> bool:
        """TimescaleDB 2.18 renamed compression to columnstore (options and procedures)."""
        return _version_tuple(self.version) >= (2, 18)

    def _check_source(self, conn: psycopg.Connection) -> None:
        super()._check_source(conn)
        row = conn.execute(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = %s AND hypertable_name = %s",
            [self.plan.source.schema, self.plan.source.table],
        ).fetchone()
        if row is None:
            raise RollupSourceError(
                f"source table {self.plan.source} is not a hypertable, so continuous aggregates "
                f"cannot read it. Convert it: SELECT create_hypertable('{self.plan.source}', "
                f"by_range('{self.plan.source.time_column}'), migrate_data => true)."
            )

    def _create(self, conn: psycopg.Connection, rollup: Rollup) -> None:
        conn.execute(q.create_continuous_aggregate(self.plan, rollup))

    def _cagg(self, conn: psycopg.Connection, rollup: Rollup) -> tuple[bool, bool] | None:
        """(materialized_only, compression_enabled) of the aggregate, or None if not one."""
        row = conn.execute(
            "SELECT materialized_only, compression_enabled "
            "FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = %s AND view_name = %s",
            [self.plan.target_schema, rollup.name],
        ).fetchone()
        return (bool(row[0]), bool(row[1])) if row else None

    def _stored(self, state: RelationState) -> StoredDefinition:
        if state.relkind != "v":
            return StoredDefinition(None)
        return StoredDefinition.parse(state.comment)

    def _jobs(
        self, conn: psycopg.Connection, schema: str, table: str, *, cagg: bool
    ) -> list[PolicyJob]:
        if cagg:
            # Jobs name the view (TimescaleDB 2.2x) or its materialization hypertable (older).
            where = (
                "JOIN timescaledb_information.continuous_aggregates c "
                "ON j.hypertable_schema = c.view_schema AND j.hypertable_name = c.view_name "
                "OR j.hypertable_schema = c.materialization_hypertable_schema "
                "AND j.hypertable_name = c.materialization_hypertable_name "
                "WHERE c.view_schema = %s AND c.view_name = %s"
            )
        else:
            where = "WHERE j.hypertable_schema = %s AND j.hypertable_name = %s"
        rows = conn.execute(
            "SELECT j.job_id, j.proc_name::text, j.schedule_interval, "
            "(j.config->>'start_offset')::interval, (j.config->>'end_offset')::interval, "
            "(j.config->>'compress_after')::interval, (j.config->>'drop_after')::interval "
            f"FROM timescaledb_information.jobs j {where} ORDER BY j.job_id",
            [schema, table],
        ).fetchall()
        return [PolicyJob(*row) for row in rows]

    def policy_jobs(self, conn: psycopg.Connection, rollup: Rollup) -> list[PolicyJob]:
        return self._jobs(conn, self.plan.target_schema, rollup.name, cagg=True)

    def source_policy_jobs(self, conn: psycopg.Connection) -> list[PolicyJob]:
        return self._jobs(conn, self.plan.source.schema, self.plan.source.table, cagg=False)

    def columnstore_settings(
        self, conn: psycopg.Connection, rollup: Rollup
    ) -> tuple[str, str] | None:
        """(segmentby, orderby) as TimescaleDB reports them for the aggregate, if enabled."""
        row = conn.execute(
            "SELECT s.segmentby, s.orderby "
            "FROM timescaledb_information.continuous_aggregates c "
            "JOIN timescaledb_information.hypertable_compression_settings s "
            "ON s.hypertable = format('%%I.%%I', c.materialization_hypertable_schema, "
            "c.materialization_hypertable_name)::regclass "
            "WHERE c.view_schema = %s AND c.view_name = %s",
            [self.plan.target_schema, rollup.name],
        ).fetchone()
        return (row[0] or "", row[1] or "") if row else None

    def _apply_settings(self, conn: psycopg.Connection, rollup: Rollup) -> list[str]:
        plan = self.plan
        view = q.qualified_name(plan, rollup)
        changes: list[str] = []
        cagg = self._cagg(conn, rollup)
        if cagg is None:
            return changes
        materialized_only, compression_enabled = cagg
        if materialized_only != plan.materialized_only:
            conn.execute(q.set_materialized_only(plan, rollup))
            changes.append(f"{rollup.name}: materialized_only = {plan.materialized_only}")
        jobs = self.policy_jobs(conn, rollup)

        refresh_job = _job(jobs, "policy_refresh_continuous_aggregate")
        wanted = rollup.refresh
        same = (
            refresh_job is not None
            and wanted is not None
            and (refresh_job.start_offset, refresh_job.end_offset, refresh_job.schedule_interval)
            == (wanted.start_offset, wanted.end_offset, wanted.schedule_interval)
        )
        if refresh_job is not None and not same:
            conn.execute(
                "SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)",
                [view],
            )
            changes.append(f"{rollup.name}: removed refresh policy")
        if wanted is not None and not same:
            conn.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval,"
                " end_offset => %s::interval, schedule_interval => %s::interval)",
                [view, wanted.start_offset, wanted.end_offset, wanted.schedule_interval],
            )
            changes.append(
                f"{rollup.name}: refresh policy {wanted.start_offset}..{wanted.end_offset}"
            )

        columnstore = plan.columnstore
        compress_job = _job(jobs, "policy_compression")
        if columnstore is not None:
            settings = self.columnstore_settings(conn, rollup) if compression_enabled else None
            if settings is None or not _same_columnstore(
                settings, columnstore.segmentby, columnstore.orderby
            ):
                conn.execute(
                    q.enable_columnstore(plan, rollup, legacy=not self.has_columnstore_api)
                )
                changes.append(f"{rollup.name}: columnstore enabled")
            if compress_job is None or compress_job.compress_after != columnstore.after:
                if compress_job is not None:
                    self._remove_columnstore_policy(conn, view)
                self._add_columnstore_policy(conn, view, columnstore.after)
                changes.append(f"{rollup.name}: columnstore policy after {columnstore.after}")
        elif compress_job is not None:
            # Converted chunks stay in the columnstore; only the policy goes.
            self._remove_columnstore_policy(conn, view)
            changes.append(f"{rollup.name}: removed columnstore policy")

        changes.extend(
            self._apply_retention(
                conn, view, rollup.name, _job(jobs, "policy_retention"), rollup.drop_after
            )
        )
        return changes

    def _apply_source_settings(self, conn: psycopg.Connection) -> list[str]:
        wanted = self.plan.raw_drop_after
        if wanted is None:
            # The source table belongs to the ingest component: without raw_drop_after its
            # retention is left as it is.
            return []
        job = _job(self.source_policy_jobs(conn), "policy_retention")
        return self._apply_retention(
            conn, q.source_qualified_name(self.plan), str(self.plan.source), job, wanted
        )

    def _apply_retention(
        self,
        conn: psycopg.Connection,
        relation: str,
        label: str,
        job: PolicyJob | None,
        wanted: timedelta | None,
    ) -> list[str]:
        if job is not None and job.drop_after == wanted:
            return []
        changes: list[str] = []
        if job is not None:
            conn.execute(
                "SELECT remove_retention_policy(%s::regclass, if_exists => true)", [relation]
            )
            changes.append(f"{label}: removed retention policy")
        if wanted is not None:
            conn.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)",
                [relation, wanted],
            )
            changes.append(f"{label}: retention policy drop_after {wanted}")
        return changes

    def _add_columnstore_policy(
        self, conn: psycopg.Connection, view: str, after: timedelta
    ) -> None:
        if self.has_columnstore_api:
            conn.execute(
                "CALL add_columnstore_policy(%s::regclass, after => %s::interval)", [view, after]
            )
        else:
            conn.execute(
                "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval)",
                [view, after],
            )

    def _remove_columnstore_policy(self, conn: psycopg.Connection, view: str) -> None:
        if self.has_columnstore_api:
            conn.execute("CALL remove_columnstore_policy(%s::regclass, if_exists => true)", [view])
        else:
            conn.execute(
                "SELECT remove_compression_policy(%s::regclass, if_exists => true)", [view]
            )

    def _refresh(self, rollup: Rollup, window: Window) -> None:
        view = q.qualified_name(self.plan, rollup)
        # refresh_continuous_aggregate cannot run inside a transaction block.
        with (
            self.warehouse.connection(autocommit=True) as conn,
            session_locks(conn, [advisory_key("rollup", view)]),
        ):
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                [view, window.start, window.end],
            )

    def drift(self, conn: psycopg.Connection, rollup: Rollup) -> list[str]:
        problems = super().drift(conn, rollup)
        cagg = self._cagg(conn, rollup)
        if cagg is None:
            return problems
        plan = self.plan
        materialized_only, compression_enabled = cagg
        if materialized_only != plan.materialized_only:
            problems.append(
                f"{rollup.name}: materialized_only is {materialized_only}, YAML says "
                f"{plan.materialized_only}"
            )
        jobs = self.policy_jobs(conn, rollup)
        refresh_job = _job(jobs, "policy_refresh_continuous_aggregate")
        wanted = rollup.refresh
        if wanted is None and refresh_job is not None:
            problems.append(f"{rollup.name}: refresh policy present, YAML has none")
        elif wanted is not None and (
            refresh_job is None
            or (refresh_job.start_offset, refresh_job.end_offset, refresh_job.schedule_interval)
            != (wanted.start_offset, wanted.end_offset, wanted.schedule_interval)
        ):
            problems.append(f"{rollup.name}: refresh policy differs from YAML ({refresh_job})")
        compress_job = _job(jobs, "policy_compression")
        if plan.columnstore is not None:
            if not compression_enabled:
                problems.append(f"{rollup.name}: columnstore not enabled")
            else:
                settings = self.columnstore_settings(conn, rollup)
                if settings is None or not _same_columnstore(
                    settings, plan.columnstore.segmentby, plan.columnstore.orderby
                ):
                    problems.append(f"{rollup.name}: columnstore settings differ ({settings})")
            if compress_job is None or compress_job.compress_after != plan.columnstore.after:
                problems.append(f"{rollup.name}: columnstore policy differs ({compress_job})")
        elif compress_job is not None:
            problems.append(f"{rollup.name}: columnstore policy present, YAML has none")
        retention_job = _job(jobs, "policy_retention")
        if (retention_job.drop_after if retention_job else None) != rollup.drop_after:
            problems.append(f"{rollup.name}: retention policy differs ({retention_job})")
        if plan.raw_drop_after is not None:
            raw_job = _job(self.source_policy_jobs(conn), "policy_retention")
            if raw_job is None or raw_job.drop_after != plan.raw_drop_after:
                problems.append(f"{plan.source}: retention policy differs ({raw_job})")
        return problems


def _job(jobs: list[PolicyJob], proc_name: str) -> PolicyJob | None:
    return next((j for j in jobs if j.proc_name == proc_name), None)


def _normalize_order(text: str) -> str:
    """`"bucket" DESC NULLS FIRST, tag_id ASC` -> `bucket desc,tag_id` (defaults dropped)."""
    parts = []
    for part in text.split(","):
        words = part.replace('"', "").lower().split()
        if not words:
            continue
        descending = "desc" in words
        nulls = "first" if "first" in words else "last" if "last" in words else None
        default_nulls = "first" if descending else "last"
        item = words[0] + (" desc" if descending else "")
        if nulls is not None and nulls != default_nulls:
            item += f" nulls {nulls}"
        parts.append(item)
    return ",".join(parts)


def _same_columnstore(
    settings: tuple[str, str], segmentby: tuple[str, ...], orderby: tuple[tuple[str, str], ...]
) -> bool:
    wanted_order = ",".join(f"{c} {d}" for c, d in orderby)
    return _normalize_order(settings[0]) == _normalize_order(",".join(segmentby)) and (
        _normalize_order(settings[1]) == _normalize_order(wanted_order)
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)
