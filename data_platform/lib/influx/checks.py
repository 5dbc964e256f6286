"""Asset checks of an ingest run: reconciliation, lag, gaps and schema drift."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from psycopg import sql

from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.tables import HistorianTables
from data_platform.lib.influx.reader.model import FieldInfo
from data_platform.lib.influx.specs import parse_duration
from data_platform.lib.timing.window import Window

if TYPE_CHECKING:
    from data_platform.lib.influx.component import (
        InfluxIngestComponent,
        InfluxReader,
        MeasurementRun,
    )


def run_checks(
    conn: psycopg.Connection,
    *,
    component: InfluxIngestComponent,
    reader: InfluxReader,
    registry: SignalRegistry,
    asset_key: dg.AssetKey,
    runs: Sequence[MeasurementRun],
    types: Mapping[str, list[FieldInfo]],
    run_window: Window,
    lag_s: float | None,
) -> list[dg.AssetCheckResult]:
    tables = component.tables
    return [
        reconcile(conn, tables, component, reader, asset_key, runs, run_window),
        lag_check(component, asset_key, run_window, lag_s),
        gaps_check(conn, tables, component, registry, asset_key, runs, run_window),
        drift_check(conn, tables, component, registry, asset_key, types),
    ]


def warehouse_stats(
    conn: psycopg.Connection, tables: HistorianTables, source: str, measurement: str, window: Window
) -> dict[str, tuple[int, datetime, datetime]]:
    """Per field of a measurement: rows, first and last timestamp in the window."""
    rows = conn.execute(
        sql.SQL(
            "SELECT t.field, count(*), min(h.ts), max(h.ts) FROM {hist} h "
            "JOIN {tags} t ON t.tag_id = h.tag_id "
            "WHERE t.source = %s AND t.measurement = %s AND h.ts >= %s AND h.ts < %s "
            "GROUP BY t.field"
        ).format(hist=tables.hist, tags=tables.tags),
        [source, measurement, window.start, window.end],
    ).fetchall()
    return {f: (n, lo, hi) for f, n, lo, hi in rows}


def _us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def reconcile(
    conn: psycopg.Connection,
    tables: HistorianTables,
    component: InfluxIngestComponent,
    reader: InfluxReader,
    asset_key: dg.AssetKey,
    runs: Sequence[MeasurementRun],
    window: Window,
) -> dg.AssetCheckResult:
    mismatches: list[dict[str, Any]] = []
    compared = 0
    skipped: list[str] = []
    collisions = sum(w.collisions for r in runs for w in r.writes)
    for run in runs:
        name = run.measurement.name
        if run.measurement.tags:
            skipped.append(f"{name} (tag filters)")
            continue
        source = reader.window_stats(name, window)
        stored = warehouse_stats(conn, tables, component.name, name, window)
        fields = set(source) | set(stored)
        if run.measurement.fields is not None:
            fields &= set(run.measurement.fields)
        for fld in sorted(fields):
            stats = source.get(fld)
            expected = stats.count if stats else 0
            got = stored.get(fld)
            count = got[0] if got else 0
            compared += 1
            problem = None
            if count != expected:
                problem = f"{count} rows stored, {expected} at the source"
            elif (
                got
                and stats
                and expected
                and (_us(got[1]), _us(got[2])) != (stats.first_ns // 1000, stats.last_ns // 1000)
            ):
                problem = "first/last timestamp differ"
            if problem:
                mismatches.append({"measurement": name, "field": fld, "problem": problem})
    shortfall_explained = collisions > 0 and all("rows stored" in m["problem"] for m in mismatches)
    passed = not mismatches or (shortfall_explained and len(mismatches) <= collisions)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="reconciliation",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR
        if component.checks.blocking
        else dg.AssetCheckSeverity.WARN,
        metadata={
            "window": str(window),
            "fields_compared": compared,
            "mismatches": dg.MetadataValue.json(mismatches[:50]),
            "timestamp_collisions": collisions,
            "skipped": dg.MetadataValue.json(skipped),
        },
    )


def lag_check(
    component: InfluxIngestComponent,
    asset_key: dg.AssetKey,
    window: Window,
    lag_s: float | None,
) -> dg.AssetCheckResult:
    spec = component.checks
    lateness = (
        parse_duration(component.partitions.lateness, "partitions.lateness")
        if component.partitions.lateness
        else timedelta(0)
    )
    max_lag = (
        parse_duration(spec.max_lag, "checks.max_lag")
        if spec.max_lag
        else 2 * component.partitions.width + lateness
    )
    now = datetime.now(UTC)
    historical = window.end < now - max_lag
    passed = historical or (lag_s is not None and lag_s <= max_lag.total_seconds())
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="lag",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "lag_seconds": round(lag_s, 3) if lag_s is not None else -1.0,
            "max_lag_seconds": max_lag.total_seconds(),
            "judged": not historical,
            "note": "historical window: lag is not judged" if historical else "",
        },
    )


def gaps_check(
    conn: psycopg.Connection,
    tables: HistorianTables,
    component: InfluxIngestComponent,
    registry: SignalRegistry,
    asset_key: dg.AssetKey,
    runs: Sequence[MeasurementRun],
    window: Window,
) -> dg.AssetCheckResult:
    """Series silent far longer than their usual interval, from what the run just wrote.

    The writer tracks each series' row count, span and longest silence while it copies, so
    this check costs no query. The usual interval leaves the longest silence out.
    """
    min_gap_us = parse_duration(component.checks.min_gap, "checks.min_gap").total_seconds() * 1e6
    factor = component.checks.gap_factor
    gaps: list[dict[str, Any]] = []
    checked = 0
    for run in runs:
        for write in run.writes:
            for timing in write.timings.values():
                usual = timing.usual_interval_us
                if usual is None:
                    continue
                checked += 1
                if timing.longest_us > max(min_gap_us, factor * usual):
                    start = datetime.fromtimestamp((timing.longest_from_us or 0) / 1e6, UTC)
                    gaps.append(
                        {
                            "series": timing.series,
                            "usual_interval_s": round(usual / 1e6, 3),
                            "longest_silence_s": round(timing.longest_us / 1e6, 3),
                            "silent_from": start.isoformat(),
                        }
                    )
    gaps.sort(key=lambda g: -g["longest_silence_s"])
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="gaps",
        passed=not gaps,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "series_with_gaps": len(gaps),
            "series_checked": checked,
            "gaps": dg.MetadataValue.json(gaps[:20]),
        },
    )


def drift_check(
    conn: psycopg.Connection,
    tables: HistorianTables,
    component: InfluxIngestComponent,
    registry: SignalRegistry,
    asset_key: dg.AssetKey,
    types: Mapping[str, list[FieldInfo]],
) -> dg.AssetCheckResult:
    current: dict[tuple[str, str], str] = {}
    for measurement, infos in types.items():
        by_field: dict[str, set[str]] = {}
        for info in infos:
            by_field.setdefault(info.field, set()).add(info.influx_type)
        for fld, kinds in by_field.items():
            current[(measurement, fld)] = ",".join(sorted(kinds))
    conflicts = [
        {"measurement": m, "field": f, "types": t} for (m, f), t in current.items() if "," in t
    ]
    changed = registry.update_types(conn, current)
    conn.commit()
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="schema_drift",
        passed=not conflicts and not changed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "fields_with_several_types": dg.MetadataValue.json(conflicts),
            "type_changes": dg.MetadataValue.json(changed),
        },
    )


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
