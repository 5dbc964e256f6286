"""Keeping rollups in the warehouse: DDL, in-place settings, window refreshes, retention.

`TimescaleEngine` maintains continuous aggregates and their policies; `PostgresEngine` maintains
rollup tables with the same columns window by window. Both take the same `RollupPlan`.

Only one connection is held at a time: some engines serve every client from one backend
session, where a second connection would run inside the first one's transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.plan import Rollup, RollupPlan
from data_platform.lib.timing.buckets import ceil_to_bucket, floor_to_bucket
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource

MANAGED_BY = "data_platform.lib.TimescaleAggregateComponent"
HISTORY_SLICE = timedelta(days=1)
"""Rebuilt rollups re-materialize their history in slices of about this length."""


class RollupDefinitionChanged(Exception):
    """A rollup in the warehouse was built from a different definition than the YAML's."""


class RollupSourceError(Exception):
    """The source table is missing or cannot back continuous aggregates."""


class RollupPolicyError(Exception):
    """TimescaleDB refused a policy the YAML asks for."""


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """What the component wrote into the rollup's COMMENT."""

    definition: str | None
    history_pending: bool = False

    @staticmethod
    def parse(comment: str | None) -> StoredDefinition:
        try:
            payload = json.loads(comment or "")
        except ValueError:
            return StoredDefinition(None)
        if not isinstance(payload, dict) or payload.get("managed_by") != MANAGED_BY:
            return StoredDefinition(None)
        return StoredDefinition(
            payload.get("definition"), history_pending=payload.get("history") == "pending"
        )

    def render(self) -> str:
        return json.dumps(
            {
                "managed_by": MANAGED_BY,
                "definition": self.definition,
                "history": "pending" if self.history_pending else "complete",
            },
            separators=(",", ":"),
        )


@dataclass(slots=True)
class Preparation:
    """What `prepare` changed: created and rebuilt rollups, and those whose history is due."""

    created: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    history: list[Rollup] = field(default_factory=list)
    policy_changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    rollup: Rollup
    window: Window
    rows: int
    seconds: float
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class RelationState:
    relkind: str
    comment: str | None


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    digest = hashlib.blake2b(f"rollup:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


class RollupEngine:
    """Shared flow; subclasses implement the engine-specific statements."""

    kind: ClassVar[q.Engine]

    def __init__(
        self,
        plan: RollupPlan,
        warehouse: WarehouseResource,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.plan = plan
        self.warehouse = warehouse
        self.log = log or logging.getLogger(__name__)

    @property
    def name(self) -> str:
        return self.kind

    # -- DDL -------------------------------------------------------------------------------------

    def prepare(self) -> Preparation:
        """Create missing rollups, rebuild or refuse changed ones, apply in-place settings.

        Runs in one transaction holding advisory locks on the target schema and every rollup,
        so concurrent materializations of adjacent partitions create each object once.
        """
        plan = self.plan
        done = Preparation()
        due: set[str] = set()
        dropped: set[str] = set()
        with self.warehouse.connection() as conn, conn.transaction():
            for key in [plan.target_schema, *(q.qualified_name(plan, r) for r in plan.rollups)]:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(key)])
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(q.ident(plan.target_schema))
            )
            self._check_source(conn)
            for rollup in plan.rollups:
                wanted = q.rollup_definition_hash(self.kind, plan, rollup)
                state = self._state(conn, rollup)
                base_due = rollup.base is not None and rollup.base.name in due
                if state is None:
                    self._create(conn, rollup)
                    pending = base_due
                    # Dropped with a rebuilt narrower rollup: rebuilt too.
                    (done.rebuilt if rollup.name in dropped else done.created).append(rollup.name)
                    self._write_definition(conn, rollup, StoredDefinition(wanted, pending))
                else:
                    stored = self._stored(state)
                    if stored.definition != wanted:
                        dropped.update(self._refuse_or_drop(conn, rollup, state))
                        self._create(conn, rollup)
                        pending = True
                        done.rebuilt.append(rollup.name)
                        self._write_definition(conn, rollup, StoredDefinition(wanted, True))
                    else:
                        pending = stored.history_pending or base_due
                        if pending and not stored.history_pending:
                            self._write_definition(conn, rollup, StoredDefinition(wanted, True))
                if pending:
                    due.add(rollup.name)
                    done.history.append(rollup)
                done.policy_changes.extend(self._apply_settings(conn, rollup))
            done.policy_changes.extend(self._apply_source_settings(conn))
        return done

    def _refuse_or_drop(
        self, conn: psycopg.Connection, rollup: Rollup, state: RelationState
    ) -> list[str]:
        """Raise in `fail` mode; else drop the rollup and those built on it. Returns the names."""
        plan = self.plan
        if plan.on_definition_change != "rebuild":
            raise RollupDefinitionChanged(
                f"{plan.target_schema}.{rollup.name} in the warehouse was built from a different "
                f"definition than the YAML now describes (source, bucket width, base bucket or "
                f"aggregates changed). Set `on_definition_change: rebuild` to drop and rebuild it "
                f"(and the rollups built from it) and re-materialize its history from "
                f"partitions.start, or restore the previous YAML."
            )
        self.log.warning(
            f"Rebuilding {plan.target_schema}.{rollup.name}: its definition changed "
            "(on_definition_change: rebuild)"
        )
        # Widest first: TimescaleDB's CASCADE does not drop continuous aggregates built on
        # the dropped one (their internal views still depend on it).
        dropped = []
        for child in reversed(plan.descendants(rollup)):
            child_state = self._state(conn, child)
            if child_state is not None:
                conn.execute(q.drop_relation(plan, child, child_state.relkind))
                dropped.append(child.name)
        conn.execute(q.drop_relation(plan, rollup, state.relkind))
        return [*dropped, rollup.name]

    def _state(self, conn: psycopg.Connection, rollup: Rollup) -> RelationState | None:
        row = conn.execute(
            "SELECT c.relkind::text, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [self.plan.target_schema, rollup.name],
        ).fetchone()
        return RelationState(row[0], row[1]) if row else None

    def _stored(self, state: RelationState) -> StoredDefinition:
        return StoredDefinition.parse(state.comment)

    def stored_definition(self, conn: psycopg.Connection, rollup: Rollup) -> StoredDefinition:
        state = self._state(conn, rollup)
        return self._stored(state) if state else StoredDefinition(None)

    def _write_definition(
        self, conn: psycopg.Connection, rollup: Rollup, stored: StoredDefinition
    ) -> None:
        conn.execute(q.comment_on(self.plan, rollup, self.kind, stored.render()))

    def _source_exists(self, conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [q.source_qualified_name(self.plan)]
        ).fetchone()
        return bool(row and row[0])

    def _check_source(self, conn: psycopg.Connection) -> None:
        if not self._source_exists(conn):
            raise RollupSourceError(
                f"source table {self.plan.source} does not exist. Materialize the ingest assets "
                "(source.assets) first, or fix source.schema / source.table."
            )

    def _create(self, conn: psycopg.Connection, rollup: Rollup) -> None:
        raise NotImplementedError

    def _apply_settings(self, conn: psycopg.Connection, rollup: Rollup) -> list[str]:
        return []

    def _apply_source_settings(self, conn: psycopg.Connection) -> list[str]:
        return []

    # -- refresh ---------------------------------------------------------------------------------

    def refresh_window(self, rollup: Rollup, partition_window: Window) -> RefreshOutcome:
        """Re-materialize the buckets of `rollup` that overlap `partition_window`."""
        window = partition_window.widened_to(rollup.width)
        skipped = self._skip_reason(rollup, window)
        started = time.perf_counter()
        if skipped is None:
            self._refresh(rollup, window)
        seconds = time.perf_counter() - started
        return RefreshOutcome(rollup, window, self.count_rows(rollup, window), seconds, skipped)

    def refresh_history(self, rollups: list[Rollup]) -> None:
        """Re-materialize rebuilt rollups over [partitions.start, newest source data].

        Walks the range in slices of about a day (whole buckets), narrowest rollup first, then
        marks each rollup's history complete in its COMMENT.
        """
        plan = self.plan
        with self.warehouse.connection() as conn:
            row = conn.execute(q.source_time_range(plan, self.kind)).fetchone()
        oldest, newest = (row[0], row[1]) if row else (None, None)
        for rollup in rollups:
            if oldest is not None and newest is not None:
                start = max(plan.partitions.start, oldest)
                history = Window(
                    floor_to_bucket(start, rollup.width),
                    ceil_to_bucket(min(newest, utcnow()), rollup.width) + rollup.width,
                )
                step = rollup.width * max(1, -(-HISTORY_SLICE // rollup.width))
                for part in history.slices(step):
                    if self._skip_reason(rollup, part) is None:
                        self._refresh(rollup, part)
                self.log.info(f"Re-materialized {rollup.name} over {history}")
            with self.warehouse.connection() as conn:
                wanted = q.rollup_definition_hash(self.kind, plan, rollup)
                self._write_definition(conn, rollup, StoredDefinition(wanted, False))

    def _skip_reason(self, rollup: Rollup, window: Window) -> str | None:
        return None

    def _refresh(self, rollup: Rollup, window: Window) -> None:
        raise NotImplementedError

    def count_rows(self, rollup: Rollup, window: Window) -> int:
        with self.warehouse.connection() as conn:
            row = conn.execute(
                q.window_row_count(self.plan, rollup), {"start": window.start, "end": window.end}
            ).fetchone()
        return int(row[0]) if row else 0

    def enforce_retention(self) -> dict[str, int]:
        """Delete rows past retention where no policy engine does it. Rows deleted per relation."""
        return {}

    # -- inspection ------------------------------------------------------------------------------

    def drift(self, conn: psycopg.Connection, rollup: Rollup) -> list[str]:
        """Differences between the warehouse and the YAML for one rollup (empty: in sync)."""
        stored = self.stored_definition(conn, rollup)
        wanted = q.rollup_definition_hash(self.kind, self.plan, rollup)
        problems: list[str] = []
        if stored.definition is None:
            problems.append(f"{rollup.name} is missing or not managed by this component")
        elif stored.definition != wanted:
            problems.append(f"{rollup.name} was built from a different definition")
        elif stored.history_pending:
            problems.append(f"{rollup.name} history re-materialization has not finished")
        return problems

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        with self.warehouse.connection() as conn:
            yield conn


class PostgresEngine(RollupEngine):
    """Rollup tables maintained by the component, one partition window per transaction."""

    kind = "postgresql"

    def _check_source(self, conn: psycopg.Connection) -> None:
        super()._check_source(conn)
        plan = self.plan
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int >= 180000 OR EXISTS ("
            " SELECT 1 FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = %s::regclass AND a.attname = %s)",
            [q.source_qualified_name(plan), plan.source.time_column],
        ).fetchone()
        if row is not None and not row[0]:
            # PostgreSQL 18 reads a time range from the (signal, time) index with a skip scan;
            # older servers need an index that starts with the time column.
            self.log.warning(
                f"{plan.source} has no index starting with {plan.source.time_column}: before "
                "PostgreSQL 18 every window refresh scans the whole table. Add one, e.g. "
                f"CREATE INDEX ON {plan.source} USING brin ({plan.source.time_column})."
            )

    def _create(self, conn: psycopg.Connection, rollup: Rollup) -> None:
        for statement in q.create_rollup_table(self.plan, rollup):
            conn.execute(statement)

    def _refresh(self, rollup: Rollup, window: Window) -> None:
        params = {"start": window.start, "end": window.end}
        with self.warehouse.connection() as conn, conn.transaction():
            # Windows of wide buckets overlap between adjacent partitions: one writer at a time.
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                [lock_key(q.qualified_name(self.plan, rollup))],
            )
            conn.execute(q.delete_window(self.plan, rollup), params)
            conn.execute(q.insert_window(self.plan, rollup), params)

    def _skip_reason(self, rollup: Rollup, window: Window) -> str | None:
        kept = self.plan.input_retention(rollup)
        if kept is not None and window.start < utcnow() - kept:
            source = str(self.plan.source) if rollup.base is None else rollup.base.name
            return (
                f"window starts before the retention horizon of {source} "
                f"({kept} kept); refreshing would replace rollup rows with nothing"
            )
        return None

    def enforce_retention(self) -> dict[str, int]:
        plan = self.plan
        now = utcnow()
        deleted: dict[str, int] = {}
        targets: list[tuple[sql.Identifier, str, str, timedelta]] = [
            (q.relation(plan, r), q.BUCKET_COLUMN, r.name, r.drop_after)
            for r in plan.rollups
            if r.drop_after is not None
        ]
        if plan.raw_drop_after is not None:
            targets.append(
                (
                    q.source_relation(plan),
                    plan.source.time_column,
                    str(plan.source),
                    plan.raw_drop_after,
                )
            )
        for rel, column, label, keep in targets:
            with self.warehouse.connection() as conn:
                cursor = conn.execute(q.delete_older_than(rel, column), {"horizon": now - keep})
                deleted[label] = cursor.rowcount
        return deleted


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
        key = lock_key(view)
        # refresh_continuous_aggregate cannot run inside a transaction block.
        with self.warehouse.connection(autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                    [view, window.start, window.end],
                )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])

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


def open_engine(
    plan: RollupPlan, warehouse: WarehouseResource, log: logging.Logger | Any | None = None
) -> RollupEngine:
    """TimescaleEngine when the extension is installed in the warehouse, else PostgresEngine."""
    from data_platform.lib.warehouse import has_timescaledb

    with warehouse.connection() as conn:
        version = has_timescaledb(conn)
    if version:
        return TimescaleEngine(plan, warehouse, version, log)
    return PostgresEngine(plan, warehouse, log)
