"""An ingest run: open the source, register its signals, replace each window, check, report.

Every call into the reader (`open_reader`) and the historian writer (`write_window`,
`refresh_registry`) goes through this module; the component only wires assets to it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from data_platform.lib.historian.errors import HistorianWriteError
from data_platform.lib.historian.registry import SignalRegistry
from data_platform.lib.historian.signals import Signal
from data_platform.lib.historian.tables import ensure_tables
from data_platform.lib.historian.window import (
    WRITE_STEPS,
    WindowLock,
    WindowWrite,
    replace_window,
)
from data_platform.lib.influx import checks
from data_platform.lib.influx.plan import IngestPlan, MeasurementSelection
from data_platform.lib.influx.reader.discovery import lookback_window, signals_with_values
from data_platform.lib.influx.reader.model import FieldInfo, Tags
from data_platform.lib.influx.reader.protocol import InfluxReader, window_batches
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.lib.influx.results import AssetRun, MeasurementRun
from data_platform.lib.timing.window import Window
from data_platform.lib.warehouse import WarehouseResource, WarehouseUnavailable

NAMING_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class IngestError(Exception):
    """A window of a source could not be ingested; the message names source, window and fix."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    from data_platform.lib.influx.reader.errors import InfluxTransientError

    return (InfluxTransientError, WarehouseUnavailable, psycopg.OperationalError)


@contextmanager
def open_reader(plan: IngestPlan) -> Iterator[InfluxReader]:
    """A reader for the source; secrets are read from the environment here, at run time."""
    if plan.reads == "influx":
        from data_platform.lib.influx.reader.client import InfluxClient
        from data_platform.lib.influx.reader.settings import Credentials

        spec = plan.server
        assert spec is not None
        credentials = Credentials(
            username=_secret(plan, spec.username_env, "influx.username_env"),
            password=_secret(plan, spec.password_env, "influx.password_env"),
            token=_secret(plan, spec.token_env, "influx.token_env"),
        )
        with InfluxClient(
            spec.reader,
            credentials,
            source=plan.source,
            max_retries=plan.max_attempts - 1,
            backoff_s=plan.retry_backoff_seconds,
            stream_retries=0,  # `write_window` retries the whole window
        ) as client:
            yield client  # type: ignore[misc]
    else:
        from data_platform.lib.influx.reader.source import LineProtocolSource

        files = plan.files
        assert files is not None
        yield LineProtocolSource(  # type: ignore[misc]
            list(files.paths), precision=files.precision, on_error=files.on_error
        )


def _secret(plan: IngestPlan, env_name: str | None, setting: str) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise IngestError(
            f"source '{plan.source}': {setting} names {env_name}, which is not set; set it in "
            ".env (local) or the deployment's environment"
        )
    return value


def skipped_lines(reader: InfluxReader) -> tuple[int, list[str]]:
    """Malformed lines a files source skipped (`on_error: skip`) in all its files: how many,
    and the first few errors (file, line, problem). Lines are not in any window, so every
    materialization of the source reports the total."""
    from data_platform.lib.influx.reader.source import LineProtocolSource

    if not isinstance(reader, LineProtocolSource):
        return 0, []
    stats = [index.stats for index in reader.files()]
    return sum(s.skipped_lines for s in stats), [str(e) for s in stats for e in s.errors][:5]


def signal_namer(plan: IngestPlan) -> Callable[[Signal], str]:
    if plan.signal_name is None:
        return Signal.default_name
    template = NAMING_ENV.from_string(plan.signal_name)

    def name(signal: Signal) -> str:
        try:
            return template.render(
                source=signal.source,
                measurement=signal.measurement,
                tags=dict(signal.tags),
                field=signal.field,
                series=signal.series_key,
            ).strip()
        except TemplateError as exc:
            raise IngestError(
                f"source '{plan.source}': signal_name failed for {signal.key}: {exc}"
            ) from exc

    return name


def new_registry(plan: IngestPlan) -> SignalRegistry:
    return SignalRegistry(
        plan.source,
        plan.tables,
        signal_namer(plan),
        lambda signal: plan.unit_of(signal.measurement, signal.field),
    )


@dataclass
class Discovery:
    """The signals with values a selection finds at the source, and each field's type(s).

    `live_fields` are the (measurement, field) pairs the source still lists (SHOW FIELD KEYS);
    `series` the tag sets it lists per measurement (SHOW SERIES), None where it cannot
    (InfluxDB 3). Together they decide which registered signals are gone (`removed`).
    """

    types: dict[str, list[FieldInfo]] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    field_types: dict[tuple[str, str], str] = field(default_factory=dict)
    live_fields: set[tuple[str, str]] = field(default_factory=set)
    series: dict[str, set[Tags] | None] = field(default_factory=dict)
    windows: dict[str, str] = field(default_factory=dict)

    def gone(self, signal: Signal) -> bool:
        """Whether a registered signal has left the source: its measurement or field is no
        longer listed, or (where series can be listed) its series is not. A signal merely
        silent in the look-back is not gone."""
        if (signal.measurement, signal.field) not in self.live_fields:
            return True
        listed = self.series.get(signal.measurement)
        return listed is not None and signal.tags not in listed


def discover(
    plan: IngestPlan,
    reader: InfluxReader,
    selection: MeasurementSelection,
    window: Window | None = None,
) -> Discovery:
    """Measurements, fields (with types) and the signals with values of one selection: in
    `window`, or in the look-back before each measurement's newest point (the registry)."""
    found = Discovery()
    names = sorted(reader.list_measurements()) if selection.every_measurement else [selection.name]
    lookback = plan.server.discovery_lookback if plan.server is not None else None
    for name in names:
        infos = found.types[name] = reader.list_field_keys(name)
        by_field: dict[str, set[str]] = {}
        for info in infos:
            by_field.setdefault(info.field, set()).add(info.influx_type)
        fields = [f for f in by_field if selection.fields is None or f in selection.fields]
        for f in fields:
            found.field_types[(name, f)] = ",".join(sorted(by_field[f]))
            found.live_fields.add((name, f))
        if window is None:
            listed = reader.list_series(name)
            found.series[name] = set(listed) if listed is not None else None
        searched = window or lookback_window(reader, name, lookback or timedelta(days=7))
        if searched is None or not fields:
            continue
        found.windows[name] = str(searched)
        query = SeriesQuery(name, searched, fields, selection.tag_filter)
        for tags, with_values in signals_with_values(reader, query):
            found.signals.extend(Signal(plan.source, name, tags, f) for f in with_values)
    return found


def ingest(
    context: dg.AssetExecutionContext,
    plan: IngestPlan,
    warehouse: WarehouseResource,
    selected: Mapping[dg.AssetKey, MeasurementSelection],
) -> Iterator[dg.MaterializeResult]:
    """Replace every selected measurement's windows of the run, then check them."""
    time_window = context.partition_time_window
    windows = plan.windows(
        Window(time_window.start.astimezone(UTC), time_window.end.astimezone(UTC))
    )
    run_window = Window(windows[0].start, windows[-1].end)
    registry = new_registry(plan)
    with open_reader(plan) as reader:
        with warehouse.connection() as conn:
            engine = ensure_tables(conn, plan.tables)
        skipped, examples = skipped_lines(reader)
        if skipped:
            context.log.warning(
                f"source '{plan.source}': {skipped} malformed line(s) in the files were skipped "
                f"(files.on_error: skip), e.g. {examples[0]}"
            )
        results = []
        for key, selection in selected.items():
            found = discover(plan, reader, selection, run_window)
            # Registering up front keeps registry writes out of the windows' transactions;
            # signals that appear only during a window's stream are registered then. Only the
            # run's signals are read from the registry (by key), never the whole registry.
            with warehouse.connection() as conn:
                registry.ensure(conn, found.signals, found.field_types)
            runs = [MeasurementRun(selection.named(n)) for n in found.types]
            # The reconciliation's own questions to the source go out now, beside the windows.
            with checks.SourceStats(reader, run_window, checks.reconciled(runs)) as source:
                for window in windows:
                    for run in runs:
                        started = time.perf_counter()
                        run.writes.append(
                            write_window(context, plan, warehouse, reader, registry, run, window)
                        )
                        run.seconds += time.perf_counter() - started
                newest = [r.newest_ns for r in runs if r.newest_ns is not None]
                lag_s = (time.time_ns() - max(newest)) / 1e9 if newest else None
                written = AssetRun(selection, runs, found.types, run_window, lag_s)
                checking = time.perf_counter()
                with warehouse.connection() as conn:
                    check_results = checks.run_checks(conn, plan, source, registry, key, written)
            metadata = run_metadata(plan, written, engine, reader)
            metadata["seconds"] = dg.MetadataValue.json(
                step_seconds(runs, time.perf_counter() - checking, source.waited_s)
            )
            results.append(
                dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=check_results)
            )
    yield from results


def write_window(
    context: dg.AssetExecutionContext,
    plan: IngestPlan,
    warehouse: WarehouseResource,
    reader: InfluxReader,
    registry: SignalRegistry,
    run: MeasurementRun,
    window: Window,
) -> WindowWrite:
    """Replace one measurement's window atomically, retrying transient failures.

    The retry budget: `max_attempts` attempts, `retry_backoff_seconds` doubling between them,
    each attempt failing within the servers' connect timeouts once a server is gone.
    """
    measurement = run.measurement
    transient = _transient_errors()
    where = f"source '{plan.source}', measurement {measurement.name!r}, window {window}"
    first: BaseException | None = None
    started = time.monotonic()
    for attempt in range(1, plan.max_attempts + 1):
        try:
            with (
                warehouse.connection() as conn,
                warehouse.connection(autocommit=True) as reg_conn,
            ):

                def known_ids() -> list[int]:
                    # The registered signals this selection owns that hold rows in the window:
                    # also those that stopped sending, never those of another selection.
                    signals = registry.holding(reg_conn, measurement.name, window)
                    return [s.tag_id for s in signals if measurement.keeps(s.signal)]

                return replace_window(
                    conn,
                    registry,
                    window,
                    window_batches(reader, measurement.query(window)),
                    delete_tag_ids=known_ids,
                    on_collision=plan.on_timestamp_collision,
                    register_conn=reg_conn,
                    lock=WindowLock(f"{plan.source}/{measurement.name}", plan.partitions.width),
                )
        except transient as exc:
            first = first or exc
            if attempt == plan.max_attempts:
                raise IngestError(
                    give_up_message(where, attempt, time.monotonic() - started, first, exc)
                ) from exc
            delay = plan.retry_backoff_seconds * 2 ** (attempt - 1)
            context.log.warning(
                f"{where}: attempt {attempt} of {plan.max_attempts} failed "
                f"({type(exc).__name__}: {_clause(exc)}); retrying in {delay:.1f}s"
            )
            time.sleep(delay)
        except HistorianWriteError as exc:
            raise IngestError(str(exc)) from exc
    raise AssertionError("unreachable")


def give_up_message(
    where: str, attempts: int, seconds: float, first: BaseException, last: BaseException
) -> str:
    """What a window's last failed attempt says: both causes, and what the window holds."""
    if attempts == 1 or str(first) == str(last):
        causes = f"Cause: {_clause(last)}."
    else:
        causes = f"First cause: {_clause(first)}. Last cause: {_clause(last)}."
    return (
        f"{where}: failed after {attempts} attempt{'s' if attempts > 1 else ''} in "
        f"{seconds:.1f}s. {causes} The window holds what it held before this run; re-run it "
        "once the server is back."
    )


def _clause(exc: BaseException) -> str:
    """An error's message as a clause: one line, without its closing period."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(". ")


def run_metadata(
    plan: IngestPlan, written: AssetRun, engine: str | None, reader: InfluxReader
) -> dict[str, Any]:
    """What a materialization reports: rows, rates, windows, signals, lag and a preview."""
    runs = written.runs
    writes = [w for r in runs for w in r.writes]
    rows = sum(r.rows for r in runs)
    seconds = sum(r.seconds for r in runs)
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "rows_written": dg.MetadataValue.int(rows),
        "rows_replaced": dg.MetadataValue.int(sum(w.deleted for w in writes)),
        "values_per_second": dg.MetadataValue.float(round(rows / seconds, 1) if seconds else 0.0),
        "window": dg.MetadataValue.text(str(written.window)),
        "windows": dg.MetadataValue.int(len(runs[0].writes) if runs else 0),
        "series": dg.MetadataValue.int(sum(w.series for w in writes)),
        "signals": dg.MetadataValue.int(len({t for w in writes for t in w.signals})),
        "measurements": dg.MetadataValue.text(", ".join(r.measurement.name for r in runs)),
        "engine": dg.MetadataValue.text(f"timescaledb {engine}" if engine else "postgresql"),
        "table": dg.MetadataValue.text(str(plan.tables)),
        "timestamp_collisions": dg.MetadataValue.int(written.collisions),
        **reader_metadata(reader),
    }
    if plan.reads == "files":
        skipped, examples = skipped_lines(reader)
        metadata["skipped_lines"] = dg.MetadataValue.int(skipped)
        if examples:
            metadata["skipped_line_examples"] = dg.MetadataValue.json(examples)
    newest = [r.newest_ns for r in runs if r.newest_ns is not None]
    if written.lag_s is not None and newest:
        metadata["lag_seconds"] = dg.MetadataValue.float(round(written.lag_s, 3))
        metadata["newest_point"] = dg.MetadataValue.text(
            datetime.fromtimestamp(max(newest) / 1e9, UTC).isoformat()
        )
    preview = [p for w in writes for p in w.preview][:5]
    if preview:
        lines = ["| ts | tag_name | value | value_text |", "|---|---|---|---|"]
        for ts_ns, name, number, text in preview:
            stamp = datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat()
            lines.append(f"| {stamp} | {_md(name)} | {number} | {_md(text or '')} |")
        metadata["preview"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


def reader_metadata(reader: InfluxReader) -> dict[str, Any]:
    """Which InfluxDB generation, response format and auth scheme a server read used."""
    from data_platform.lib.influx.reader.client import InfluxClient

    if not isinstance(reader, InfluxClient):
        return {}
    return {
        "influx_generation": dg.MetadataValue.text(reader.generation.label),
        "influx_format": dg.MetadataValue.text(reader.wire_format or "none yet"),
        "influx_auth": dg.MetadataValue.text(reader.auth_scheme),
    }


def step_seconds(
    runs: list[MeasurementRun], checks_s: float, source_wait_s: float = 0.0
) -> dict[str, float]:
    """Where the asset's time went: each step of its windows' replacements, then the checks,
    of which `checks_source_wait` waited for the source's own counts (asked beside the windows
    by a server reader)."""
    total: dict[str, float] = dict.fromkeys(WRITE_STEPS, 0.0)
    for write in (w for r in runs for w in r.writes):
        for step, seconds in write.seconds.items():
            total[step] += seconds
    after = {"checks": checks_s, "checks_source_wait": source_wait_s}
    return {k: round(v, 6) for k, v in {**total, **after}.items()}


def refresh_registry(plan: IngestPlan, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Discover the signals with values (look-back before each measurement's newest point),
    upsert them, record type changes and stamp the signals that left the source or hold no
    value anywhere (a stamp is cleared when the signal is found again)."""
    with open_reader(plan) as reader, warehouse.connection() as conn:
        ensure_tables(conn, plan.tables)
        registry = new_registry(plan)
        before = {r.signal: r for r in registry.load(conn)}
        discovered: list[Signal] = []
        field_types: dict[tuple[str, str], str] = {}
        found_all: list[Discovery] = []
        for selection in plan.measurements:
            found = discover(plan, reader, selection)
            found_all.append(found)
            discovered.extend(found.signals)
            field_types.update(found.field_types)
        registry.ensure(conn, discovered, field_types)
        found_signals = set(discovered)
        added = [s for s in discovered if s not in before]
        removed = [
            s
            for s in before
            if s not in found_signals and all(found.gone(s) for found in found_all)
        ]
        # Silent in the look-back and holding no value at all: registered without ever
        # carrying one (the old series x field discovery did), or every value is gone.
        gone = set(removed)
        empty = registry.without_values(
            conn, [r for s, r in before.items() if s not in found_signals and s not in gone]
        )
        changed = registry.update_types(conn, field_types)
        registry.mark_removed(conn, [*removed, *empty], found_signals)
        conn.commit()
        metadata = reader_metadata(reader)
    windows = {m: w for found in found_all for m, w in found.windows.items()}
    return dg.MaterializeResult(
        metadata={
            "signals": dg.MetadataValue.int(len(found_signals)),
            "added": dg.MetadataValue.int(len(added)),
            "removed": dg.MetadataValue.int(len(removed)),
            "without_values": dg.MetadataValue.int(len(empty)),
            "type_changes": dg.MetadataValue.json(changed),
            "added_preview": dg.MetadataValue.json([s.key for s in added[:20]]),
            "removed_preview": dg.MetadataValue.json([s.key for s in removed[:20]]),
            "without_values_preview": dg.MetadataValue.json([s.key for s in empty[:20]]),
            "discovery_windows": dg.MetadataValue.json(windows),
            "dagster/row_count": dg.MetadataValue.int(len(found_signals)),
            **metadata,
        }
    )


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
