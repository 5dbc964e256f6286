"""`PostgresEngine`: rollup tables on plain PostgreSQL, maintained window by window."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import sql

from data_platform.lib.historian.locks import advisory_key, xact_lock
from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.engines import RollupEngine, utcnow
from data_platform.lib.timescale.plan import Rollup
from data_platform.lib.timing.window import Window


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
            xact_lock(conn, [advisory_key("rollup", q.qualified_name(self.plan, rollup))])
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
