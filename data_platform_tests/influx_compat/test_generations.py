"""Registry, windows, re-run and an empty window end to end under each generation's profile."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest

from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.helpers import (
    check_results,
    load_yaml_component,
    materializations,
    run_assets,
)
from data_platform_tests.influx_compat.proxy import V1, V2, V3, V3_EARLY, Profile

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NS = 1_000_000_000
REGISTRY = dg.AssetKey(["plant", "influx_tags"])
ASSET = dg.AssetKey(["plant", "inverter"])


def sparse_lines() -> tuple[list[str], set[tuple[str, str]]]:
    """Three hours of points; each series has its own fields (no cross product)."""
    own = {"inv1": ("p", "q"), "inv2": ("p", "temp"), "inv3": ("state",)}
    lines = []
    for i in range(3 * 60):
        t = int(T0.timestamp()) * NS + i * 60 * NS
        for device, fields in own.items():
            values = ",".join(
                f'{f}="run {i}"' if f == "state" else f"{f}={i}.0" if f == "q" else f"{f}={i + 0.5}"
                for f in fields
            )
            lines.append(f"inverter,device={device} {values} {t}")
    return lines, {(d, f) for d, fields in own.items() for f in fields}


@pytest.mark.parametrize("profile", [V1, V2, V3, V3_EARLY], ids=lambda p: p.version)
def test_every_generation_registers_ingests_and_reconciles(
    profile: Profile,
    compat_proxy,
    influxd: LocalInfluxd,
    influx_db: str,
    warehouse_url: str,
    pg_conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines, signals = sparse_lines()
    influxd.write_lines(influx_db, "\n".join(lines))
    proxy = compat_proxy(profile)
    influx: dict[str, object] = {"url": proxy.url, "database": influx_db, "chunk_size": 100}
    if profile.token:
        monkeypatch.setenv("COMPAT_TOKEN", profile.token)
        influx["token_env"] = "COMPAT_TOKEN"
    attrs = {
        "name": "plant",
        "influx": influx,
        "measurements": [{"name": "inverter"}],
        "target": {"schema": "raw"},
        "partitions": {"start": "2024-03-01", "granularity": "hourly"},
        "retry_backoff_seconds": 0.05,
    }
    with load_yaml_component(attrs) as (_c, defs):
        registry = materializations(run_assets(defs, warehouse_url, selection=[REGISTRY]))
        rows = pg_conn.execute("SELECT tags->>'device', field FROM raw.influx_tag").fetchall()
        assert set(rows) == signals and len(rows) == len(signals)  # signals with values only
        assert registry[REGISTRY]["signals"] == len(signals)
        assert registry[REGISTRY]["added"] == len(signals)
        # A series new since the registry ran is registered by the window that meets it.
        late = f"inverter,device=inv9 p=7.5 {int(T0.timestamp()) * NS + 90 * 60 * NS}"
        influxd.write_lines(influx_db, late)
        lines.append(late)
        first = run_assets(
            defs,
            warehouse_url,
            partition_range=("2024-03-01-00:00", "2024-03-01-02:00"),
            selection=[ASSET],
        )
        before = pg_conn.execute(
            "SELECT tag_id, ts, value, value_text FROM raw.influx_hist ORDER BY 1, 2"
        ).fetchall()
        again = run_assets(
            defs,
            warehouse_url,
            partition_range=("2024-03-01-00:00", "2024-03-01-02:00"),
            selection=[ASSET],
        )
        after = pg_conn.execute(
            "SELECT tag_id, ts, value, value_text FROM raw.influx_hist ORDER BY 1, 2"
        ).fetchall()
        empty = run_assets(defs, warehouse_url, partition_key="2024-03-01-05:00", selection=[ASSET])
    expected_values = sum(len(line.split(" ")[1].split(",")) for line in lines)
    assert len(before) == expected_values and after == before
    for result in (first, again, empty):
        assert check_results(result)[("plant/inverter", "reconciliation")].passed
    meta = materializations(first)[ASSET]
    assert meta["rows_written"] == expected_values
    assert meta["influx_generation"].startswith(f"{profile.major}.x")
    assert meta["influx_auth"] == (
        "none" if profile.token is None else ("Token" if profile.major == 2 else "Bearer")
    )
    assert meta["influx_format"] == ("json" if profile is V3_EARLY else "msgpack")
    assert materializations(empty)[ASSET]["rows_written"] == 0
    registered = pg_conn.execute("SELECT tags->>'device', field FROM raw.influx_tag").fetchall()
    assert set(registered) == signals | {("inv9", "p")}
    sent = " ".join(proxy.statements)
    assert ("SHOW SERIES" in sent) == (profile.major < 3)
    if profile.token:
        assert set(proxy.auth_headers) <= {"Token", "Bearer"}
