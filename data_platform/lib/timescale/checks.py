"""Asset checks of a rollup: it agrees with its input, it is fresh, the warehouse matches YAML."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from data_platform.lib.timescale import sql as q
from data_platform.lib.timescale.engines import RollupEngine
from data_platform.lib.timescale.plan import Rollup
from data_platform.lib.timing.buckets import floor_to_bucket
from data_platform.lib.timing.window import Window

MATCHES_SOURCE = "matches_source"
FRESHNESS = "freshness"
MATCHES_YAML = "matches_yaml"


def check_specs(rollup: Rollup, key: dg.AssetKey, source: str) -> list[dg.AssetCheckSpec]:
    reads = source if rollup.base is None else rollup.base.name
    return [
        dg.AssetCheckSpec(
            MATCHES_SOURCE,
            asset=key,
            description=(
                f"In the refreshed window, the sum of `count` equals the non-null values in "
                f"{reads} and min/max agree with it."
            ),
        ),
        dg.AssetCheckSpec(
            FRESHNESS,
            asset=key,
            description="The newest bucket covers the newest source point, within the allowed lag.",
        ),
        dg.AssetCheckSpec(
            MATCHES_YAML,
            asset=key,
            description=(
                "The warehouse object was built from this YAML's definition; on TimescaleDB also "
                "materialized_only and the refresh, columnstore and retention policies."
            ),
        ),
    ]


def newest_partition(engine: RollupEngine, rollup: Rollup) -> Window | None:
    """The partition holding the rollup's newest bucket (checks run without a partition)."""
    with engine.read() as conn:
        newest = _scalar(conn.execute(q.newest_bucket(engine.plan, rollup)).fetchone())
    if newest is None:
        return None
    # Partitions are UTC hours, days or quarter hours: aligned like buckets of that width.
    start = floor_to_bucket(newest, engine.plan.partition_width)
    return Window(start, start + engine.plan.partition_width)


def check_matches_source(
    engine: RollupEngine, rollup: Rollup, window: Window | None, key: dg.AssetKey
) -> dg.AssetCheckResult:
    """Counts and extremes of the rollup over `window` against what it was computed from.

    The narrowest rollup is compared with the source table. A wider one is compared with its
    base rollup over the same (bucket-aligned) window: its buckets can span partitions that
    are ingested but not rolled up yet, and comparing base to source covers the rest.
    """
    plan = engine.plan
    if window is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=MATCHES_SOURCE,
            passed=True,
            description=f"{rollup.name} is empty: nothing to compare",
        )
    params = {"start": window.start, "end": window.end}
    with engine.read() as conn:
        got = conn.execute(q.rollup_window_stats(plan, rollup), params).fetchone()
        if rollup.base is None:
            expected = conn.execute(q.source_window_stats(plan), params).fetchone()
            reads = str(plan.source)
        else:
            expected = conn.execute(q.rollup_window_stats(plan, rollup.base), params).fetchone()
            reads = rollup.base.name
    assert got is not None and expected is not None
    count, low, high = got
    want_count, want_low, want_high = expected
    problems = []
    if int(count) != int(want_count):
        problems.append(f"count {count} != {want_count} in {reads}")
    if "min" in rollup.columns and low != want_low:
        problems.append(f"min {low} != {want_low}")
    if "max" in rollup.columns and high != want_high:
        problems.append(f"max {high} != {want_high}")
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=MATCHES_SOURCE,
        passed=not problems,
        description="; ".join(problems) or f"agrees with {reads}",
        metadata={
            "window": str(window),
            "rollup_count": int(count),
            "source_count": int(want_count),
            "rollup_min": _float(low),
            "source_min": _float(want_low),
            "rollup_max": _float(high),
            "source_max": _float(want_high),
            "compared_with": reads,
        },
    )


def check_freshness(
    engine: RollupEngine, rollup: Rollup, key: dg.AssetKey, max_lag: timedelta
) -> dg.AssetCheckResult:
    """Passes when the newest source point falls before newest bucket + width + max_lag."""
    plan = engine.plan
    with engine.read() as conn:
        newest_source = _scalar(conn.execute(q.newest_source_time(plan, engine.kind)).fetchone())
        newest = _scalar(conn.execute(q.newest_bucket(plan, rollup)).fetchone())
    if newest_source is None:
        passed, lag = True, None
        text = "the source table is empty"
    elif newest is None:
        passed, lag = False, None
        text = f"{rollup.name} is empty while the source has data up to {newest_source}"
    else:
        lag = newest_source - (newest + rollup.width)
        passed = lag < max_lag
        text = (
            f"newest bucket {newest} covers up to {newest + rollup.width}; newest source point "
            f"{newest_source}; allowed lag {max_lag}"
        )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=FRESHNESS,
        passed=passed,
        description=text,
        metadata={
            "newest_bucket": str(newest) if newest is not None else None,
            "newest_source_point": str(newest_source) if newest_source is not None else None,
            "lag_seconds": lag.total_seconds() if lag is not None else None,
            "max_lag_seconds": max_lag.total_seconds(),
        },
    )


def check_matches_yaml(
    engine: RollupEngine, rollup: Rollup, key: dg.AssetKey
) -> dg.AssetCheckResult:
    with engine.read() as conn:
        problems = engine.drift(conn, rollup)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=MATCHES_YAML,
        passed=not problems,
        description="; ".join(problems) or "definition and settings match the YAML",
        metadata={"engine": engine.name, "differences": len(problems)},
    )


def _scalar(row: tuple | None):  # type: ignore[type-arg]
    return row[0] if row else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
