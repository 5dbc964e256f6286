"""Keeping rollups in the warehouse: DDL, in-place settings, window refreshes, retention.

`RollupEngine` is what both engines share: `TimescaleEngine` (timescaledb.py) maintains
continuous aggregates and their policies; `PostgresEngine` (postgres.py) maintains rollup
tables with the same columns window by window. Both take the same `RollupPlan`.

Only one connection is held at a time: some engines serve every client from one backend
session, where a second connection would run inside the first one's transaction.
"""

from __future__ import annotations

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

from data_platform.lib.historian.locks import advisory_key, xact_lock
from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.plan import Rollup, RollupPlan
from data_platform.lib.timing.buckets import ceil_to_bucket, floor_to_bucket
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource

MANAGED_BY = "data_platform.lib.TimescaleAggregateComponent"
HISTORY_SLICE = timedelta(days=1)
"""Backfills and rebuilt rollups refresh in atomic slices of about this length (whole buckets)."""


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
    slices: int = 1
    """Atomic refreshes the window took (one transaction, or one TimescaleDB refresh, each)."""


@dataclass(frozen=True, slots=True)
class RelationState:
    relkind: str
    comment: str | None


def utcnow() -> datetime:
    return datetime.now(UTC)


def slice_step(rollup: Rollup) -> timedelta:
    """Whole buckets of `rollup` covering at least HISTORY_SLICE."""
    return rollup.width * max(1, -(-HISTORY_SLICE // rollup.width))


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
            names = [plan.target_schema, *(q.qualified_name(plan, r) for r in plan.rollups)]
            xact_lock(conn, [advisory_key("rollup", name) for name in names])
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
        """Re-materialize the buckets of `rollup` that overlap `partition_window`.

        A partition range (a backfill run) is refreshed in slices of about a day of whole
        buckets, each atomic on its own: a failed run keeps every slice it finished, and no
        transaction (or TimescaleDB refresh) grows with the range.
        """
        window = partition_window.widened_to(rollup.width)
        skipped: str | None = None
        started = time.perf_counter()
        parts = window.slices(slice_step(rollup))
        for part in parts:
            reason = self._skip_reason(rollup, part)
            if reason is None:
                self._refresh(rollup, part)
            else:
                skipped = skipped or reason
        seconds = time.perf_counter() - started
        rows = self.count_rows(rollup, window)
        return RefreshOutcome(rollup, window, rows, seconds, skipped, len(parts))

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
                for part in history.slices(slice_step(rollup)):
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
