"""SQL for rollups, built with `psycopg.sql`: identifiers quoted, values as parameters or literals.

Two engines read the same plan:
- TimescaleDB: continuous aggregates (`time_bucket`, `first`/`last`), hierarchical ones reading
  the narrower aggregate;
- PostgreSQL: rollup tables with the same columns, filled window by window with `date_bin`
  on TimescaleDB's bucket origin and ordered `array_agg` for first/last.

Sums and averages add in time order (`sum(value ORDER BY ts)`) on both engines, so a re-run
over unchanged data and the other engine give bit-identical rows.

DDL cannot take bind parameters, so intervals and comments in DDL are `sql.Literal`s.
"""

from __future__ import annotations

from typing import Literal, LiteralString

from psycopg import sql

from data_platform.lib.timescale.plan import BUCKET_COLUMN, Rollup, RollupPlan, definition_hash
from data_platform.lib.timing.buckets import BUCKET_ORIGIN

Engine = Literal["timescaledb", "postgresql"]

WINDOW_PARAMS = {"start", "end"}
"""Named parameters (`%(start)s`, `%(end)s`) of the window statements."""


def ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def interval_literal(rollup: Rollup) -> sql.Composable:
    return sql.SQL("INTERVAL {}").format(sql.Literal(rollup.width_text))


def relation(plan: RollupPlan, rollup: Rollup) -> sql.Identifier:
    return ident(plan.target_schema, rollup.name)


def qualified_name(plan: RollupPlan, rollup: Rollup) -> str:
    """`schema.name`, quoted where needed: the text form `::regclass` accepts."""
    return relation(plan, rollup).as_string(None)


def source_relation(plan: RollupPlan) -> sql.Identifier:
    return ident(plan.source.schema, plan.source.table)


def source_qualified_name(plan: RollupPlan) -> str:
    return source_relation(plan).as_string(None)


def _bucket_expr(engine: Engine, rollup: Rollup, time_column: str) -> sql.Composable:
    if engine == "timescaledb":
        return sql.SQL("time_bucket({width}, {t})").format(
            width=interval_literal(rollup), t=ident(time_column)
        )
    return sql.SQL("date_bin({width}, {t}, TIMESTAMPTZ {origin})").format(
        width=interval_literal(rollup),
        t=ident(time_column),
        origin=sql.Literal(BUCKET_ORIGIN.strftime("%Y-%m-%d %H:%M:%S+00")),
    )


def _first_last(
    engine: Engine, which: Literal["first", "last"], value: str, order: str
) -> sql.Composable:
    if engine == "timescaledb":
        fn = sql.SQL("first") if which == "first" else sql.SQL("last")
        return sql.SQL("{fn}({v}, {t})").format(fn=fn, v=ident(value), t=ident(order))
    # Signals have one row per timestamp (UNIQUE (tag_id, ts)), so the ordered pick is exact and
    # equals TimescaleDB's first()/last().
    direction = sql.SQL("" if which == "first" else " DESC")
    return sql.SQL("(array_agg({v} ORDER BY {t}{d}))[1]").format(
        v=ident(value), t=ident(order), d=direction
    )


def _ordered(fn: Literal["sum", "avg"], value: str, order: str) -> sql.Composable:
    """A floating-point sum in time order: the same bits whatever order a plan reads rows in.

    Signals have one row per timestamp (and one bucket per time), so the order is total; both
    engines then add the same numbers in the same order and agree bit for bit.
    """
    return sql.SQL("{fn}({v} ORDER BY {t})").format(fn=sql.SQL(fn), v=ident(value), t=ident(order))


def aggregate_exprs(engine: Engine, plan: RollupPlan, rollup: Rollup) -> list[sql.Composable]:
    """`<expr> AS <column>` for every stored aggregate of `rollup`."""
    out: list[sql.Composable] = []
    if rollup.base is None:
        v, t = plan.source.value_column, plan.source.time_column
        exprs: dict[str, sql.Composable] = {
            "avg": _ordered("avg", v, t),
            "min": sql.SQL("min({})").format(ident(v)),
            "max": sql.SQL("max({})").format(ident(v)),
            "count": sql.SQL("count({})").format(ident(v)),
            "sum": _ordered("sum", v, t),
            "first": _first_last(engine, "first", v, t),
            "last": _first_last(engine, "last", v, t),
        }
    else:
        exprs = {
            "avg": sql.SQL("{s} / sum({c})::double precision").format(
                s=_ordered("sum", "sum", BUCKET_COLUMN), c=ident("count")
            ),
            "min": sql.SQL("min({})").format(ident("min")),
            "max": sql.SQL("max({})").format(ident("max")),
            "count": sql.SQL("sum({})::bigint").format(ident("count")),
            "sum": _ordered("sum", "sum", BUCKET_COLUMN),
            "first": _first_last(engine, "first", "first", BUCKET_COLUMN),
            "last": _first_last(engine, "last", "last", BUCKET_COLUMN),
        }
    for column in rollup.columns:
        out.append(sql.SQL("{} AS {}").format(exprs[column], ident(column)))
    return out


def rollup_select(
    engine: Engine, plan: RollupPlan, rollup: Rollup, *, windowed: bool = False
) -> sql.Composed:
    """The aggregate query of a rollup; `windowed` adds `%(start)s <= time < %(end)s`."""
    if rollup.base is None:
        time_column = plan.source.time_column
        source: sql.Composable = source_relation(plan)
        conditions: list[sql.Composable] = [
            sql.SQL("{} IS NOT NULL").format(ident(plan.source.value_column))
        ]
    else:
        time_column = BUCKET_COLUMN
        source = relation(plan, rollup.base)
        conditions = []
    if windowed:
        conditions.append(
            sql.SQL("{t} >= %(start)s AND {t} < %(end)s").format(t=ident(time_column))
        )
    columns = [
        sql.SQL("{} AS {}").format(_bucket_expr(engine, rollup, time_column), ident(BUCKET_COLUMN)),
        ident(plan.source.signal_column),
        *aggregate_exprs(engine, plan, rollup),
    ]
    where = (
        sql.SQL("\nWHERE {}").format(sql.SQL(" AND ").join(conditions))
        if conditions
        else sql.SQL("")
    )
    return sql.SQL("SELECT\n    {columns}\nFROM {source}{where}\nGROUP BY 1, 2").format(
        columns=sql.SQL(",\n    ").join(columns), source=source, where=where
    )


def rollup_definition_hash(engine: Engine, plan: RollupPlan, rollup: Rollup) -> str:
    """Hash of what the rollup's rows mean; a change in a narrower rollup changes the wider ones.

    Settings applied in place (materialized_only, policies) are not part of it.
    """
    parts = [engine, rollup_select(engine, plan, rollup).as_string(None)]
    if rollup.base is not None:
        parts.append(rollup_definition_hash(engine, plan, rollup.base))
    return definition_hash(*parts)


# -- TimescaleDB ---------------------------------------------------------------------------------


def create_continuous_aggregate(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    return sql.SQL(
        "CREATE MATERIALIZED VIEW {view}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = {mo}) AS\n"
        "{select}\n"
        "WITH NO DATA"
    ).format(
        view=relation(plan, rollup),
        mo=sql.SQL("true" if plan.materialized_only else "false"),
        select=rollup_select("timescaledb", plan, rollup),
    )


def set_materialized_only(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    return sql.SQL("ALTER MATERIALIZED VIEW {} SET (timescaledb.materialized_only = {})").format(
        relation(plan, rollup), sql.SQL("true" if plan.materialized_only else "false")
    )


def enable_columnstore(plan: RollupPlan, rollup: Rollup, *, legacy: bool) -> sql.Composed:
    """`ALTER MATERIALIZED VIEW ... SET (...)`: columnstore (2.18+) or compression options."""
    policy = plan.columnstore
    assert policy is not None
    segmentby = ", ".join(ident(c).as_string(None) for c in policy.segmentby)
    orderby = ", ".join(f"{ident(c).as_string(None)} {d}" for c, d in policy.orderby)
    if legacy:
        options = sql.SQL(
            "timescaledb.compress = true, timescaledb.compress_segmentby = {s}, "
            "timescaledb.compress_orderby = {o}"
        )
    else:
        options = sql.SQL(
            "timescaledb.enable_columnstore = true, timescaledb.segmentby = {s}, "
            "timescaledb.orderby = {o}"
        )
    return sql.SQL("ALTER MATERIALIZED VIEW {view} SET ({options})").format(
        view=relation(plan, rollup),
        options=options.format(s=sql.Literal(segmentby), o=sql.Literal(orderby)),
    )


def comment_on(plan: RollupPlan, rollup: Rollup, engine: Engine, text: str) -> sql.Composed:
    # A continuous aggregate is a view in pg_class: COMMENT ON MATERIALIZED VIEW refuses it.
    kind = sql.SQL("VIEW") if engine == "timescaledb" else sql.SQL("TABLE")
    return sql.SQL("COMMENT ON {kind} {rel} IS {text}").format(
        kind=kind, rel=relation(plan, rollup), text=sql.Literal(text)
    )


def drop_relation(plan: RollupPlan, rollup: Rollup, relkind: str) -> sql.Composed:
    # Continuous aggregates are views ('v') in pg_class but are dropped as materialized views.
    kind = sql.SQL("TABLE") if relkind in ("r", "p") else sql.SQL("MATERIALIZED VIEW")
    return sql.SQL("DROP {kind} IF EXISTS {rel} CASCADE").format(
        kind=kind, rel=relation(plan, rollup)
    )


# -- PostgreSQL ----------------------------------------------------------------------------------


def create_rollup_table(plan: RollupPlan, rollup: Rollup) -> list[sql.Composed]:
    """A table with exactly the columns (and types) of the aggregate query, keyed like a cagg."""
    rel = relation(plan, rollup)
    return [
        sql.SQL("CREATE TABLE {rel} AS\n{select}\nWITH NO DATA").format(
            rel=rel, select=rollup_select("postgresql", plan, rollup)
        ),
        sql.SQL("ALTER TABLE {rel} ADD PRIMARY KEY ({signal}, {bucket})").format(
            rel=rel, signal=ident(plan.source.signal_column), bucket=ident(BUCKET_COLUMN)
        ),
        sql.SQL("CREATE INDEX ON {rel} ({bucket})").format(rel=rel, bucket=ident(BUCKET_COLUMN)),
    ]


def delete_window(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    return sql.SQL("DELETE FROM {rel} WHERE {b} >= %(start)s AND {b} < %(end)s").format(
        rel=relation(plan, rollup), b=ident(BUCKET_COLUMN)
    )


def insert_window(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    columns = [ident(BUCKET_COLUMN), ident(plan.source.signal_column)]
    columns += [ident(c) for c in rollup.columns]
    return sql.SQL("INSERT INTO {rel} ({columns})\n{select}").format(
        rel=relation(plan, rollup),
        columns=sql.SQL(", ").join(columns),
        select=rollup_select("postgresql", plan, rollup, windowed=True),
    )


def delete_older_than(rel: sql.Identifier, time_column: str) -> sql.Composed:
    """Retention without a policy engine: `%(horizon)s` is the oldest time kept."""
    return sql.SQL("DELETE FROM {rel} WHERE {t} < %(horizon)s").format(
        rel=rel, t=ident(time_column)
    )


def creation_script(engine: Engine, plan: RollupPlan) -> str:
    """The DDL that creates the family on `engine` (policies excluded), for review and docs."""
    statements: list[sql.Composable] = []
    for rollup in plan.rollups:
        if engine == "timescaledb":
            statements.append(create_continuous_aggregate(plan, rollup))
            if plan.columnstore is not None:
                statements.append(enable_columnstore(plan, rollup, legacy=False))
        else:
            statements.extend(create_rollup_table(plan, rollup))
            statements.append(delete_window(plan, rollup))
            statements.append(insert_window(plan, rollup))
    return "\n\n".join(s.as_string(None) + ";" for s in statements) + "\n"


# -- reading -------------------------------------------------------------------------------------


def window_row_count(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {rel} WHERE {b} >= %(start)s AND {b} < %(end)s").format(
        rel=relation(plan, rollup), b=ident(BUCKET_COLUMN)
    )


def rollup_window_stats(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    """(sum of counts, min, max) of a rollup's buckets in a window."""
    return sql.SQL(
        "SELECT coalesce(sum({c}), 0)::bigint, {mn}, {mx} FROM {rel} "
        "WHERE {b} >= %(start)s AND {b} < %(end)s"
    ).format(
        c=ident("count"),
        mn=sql.SQL("min({})").format(ident("min")) if "min" in rollup.columns else sql.NULL,
        mx=sql.SQL("max({})").format(ident("max")) if "max" in rollup.columns else sql.NULL,
        rel=relation(plan, rollup),
        b=ident(BUCKET_COLUMN),
    )


def source_window_stats(plan: RollupPlan) -> sql.Composed:
    """(non-null value count, min, max) of the source table in a window."""
    v, t = ident(plan.source.value_column), ident(plan.source.time_column)
    return sql.SQL(
        "SELECT count({v}), min({v}), max({v}) FROM {rel} "
        "WHERE {v} IS NOT NULL AND {t} >= %(start)s AND {t} < %(end)s"
    ).format(v=v, t=t, rel=source_relation(plan))


def newest_bucket(plan: RollupPlan, rollup: Rollup) -> sql.Composed:
    return sql.SQL("SELECT max({b}) FROM {rel}").format(
        b=ident(BUCKET_COLUMN), rel=relation(plan, rollup)
    )


def _per_signal_extremes(plan: RollupPlan, aggregates: tuple[LiteralString, ...]) -> sql.Composed:
    """`aggregates` (min, max) of the source's time over all signals, one index probe each.

    A plain table is indexed by (signal, time): the signals are walked one probe at a time (a
    loose index scan) and each signal's extreme time read from the same index, so the query
    never reads the table's rows.
    """
    t, s, rel = (
        ident(plan.source.time_column),
        ident(plan.source.signal_column),
        source_relation(plan),
    )
    per_signal = sql.SQL(",\n       ").join(
        sql.SQL("{f}((SELECT {f}(r.{t}) FROM {rel} r WHERE r.{s} = signals.signal))").format(
            f=sql.SQL(aggregate), t=t, s=s, rel=rel
        )
        for aggregate in aggregates
    )
    return sql.SQL(
        "WITH RECURSIVE signals AS (\n"
        "    (SELECT {s} AS signal FROM {rel} ORDER BY {s} LIMIT 1)\n"
        "    UNION ALL\n"
        "    SELECT (SELECT r.{s} FROM {rel} r WHERE r.{s} > signals.signal ORDER BY r.{s} LIMIT 1)\n"
        "    FROM signals WHERE signals.signal IS NOT NULL\n"
        ")\n"
        "SELECT {per_signal}\n"
        "FROM signals WHERE signals.signal IS NOT NULL"
    ).format(s=s, rel=rel, per_signal=per_signal)


def newest_source_time(plan: RollupPlan, engine: Engine) -> sql.Composed:
    """Newest timestamp in the source table (on a hypertable, from the newest chunk's index)."""
    if engine == "timescaledb":
        return sql.SQL("SELECT max({t}) FROM {rel}").format(
            t=ident(plan.source.time_column), rel=source_relation(plan)
        )
    return _per_signal_extremes(plan, ("max",))


def source_time_range(plan: RollupPlan, engine: Engine) -> sql.Composed:
    """(oldest, newest) timestamp in the source table, read the same way as newest_source_time."""
    if engine == "timescaledb":
        return sql.SQL("SELECT min({t}), max({t}) FROM {rel}").format(
            t=ident(plan.source.time_column), rel=source_relation(plan)
        )
    return _per_signal_extremes(plan, ("min", "max"))
