"""Hostile names are data, never code; secrets stay in their variables; TLS is verified.

SQL injection canary: a table `public.canary` that a name executed as SQL would drop or empty.
InfluxQL injection canary: a measurement `canary` that a name executed as InfluxQL would drop.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._serdes import serialize_value
from psycopg import sql

from data_platform.definitions import platform_resources
from data_platform.lib.timescale import TimescaleAggregateComponent
from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.local_servers import LocalInfluxd, start_influxd
from data_platform_tests.helpers import check_results, load_yaml_component, run_assets
from data_platform_tests.lib.timescale.helpers import assets_of
from data_platform_tests.reliability.support import (
    PARTITION,
    SECRET,
    T0,
    device_lines,
    failure_text,
    ns,
    on_stream,
    source_attrs,
    write_lines,
)
from data_platform_tests.reliability.tls import TlsInfluxd, make_certificates

pytestmark = pytest.mark.integration


@pytest.fixture
def canary(pg_conn: psycopg.Connection) -> psycopg.Connection:
    pg_conn.execute("CREATE TABLE public.canary (x integer)")
    pg_conn.execute("INSERT INTO public.canary VALUES (42)")
    return pg_conn


def assert_canary_alive(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT x FROM public.canary").fetchall() == [(42,)]


HOSTILE_NAMES = [
    'raw"; DROP TABLE public.canary; --',
    "raw'); DELETE FROM public.canary; --",
    "raw /* DROP TABLE public.canary */",
    "raw\nDROP TABLE public.canary;",
    'public"."canary',
    "$q$; DROP TABLE public.canary; $q$",
    "ràw_数据_ünïcødé",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_target_names_are_names(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, canary: psycopg.Connection, name: str
) -> None:
    write_lines(influxd, influx_db, device_lines(series=3, points=10))
    target = {"schema": name, "table": f"{name} hist", "registry_table": f"{name} tags"}
    with load_yaml_component(source_attrs(influxd.url, influx_db, target=target)) as (_c, defs):
        result = run_assets(defs, warehouse_url, partition_key=PARTITION)
    assert result.success
    assert check_results(result)[("plant/m", "reconciliation")].passed
    stored = canary.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name, f"{name} hist"))
    ).fetchone()
    assert stored == (3 * 10 * 2,)
    assert_canary_alive(canary)


def test_hostile_schema_names_in_rollups(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, canary: psycopg.Connection
) -> None:
    raw, rollups = HOSTILE_NAMES[0], HOSTILE_NAMES[3]
    write_lines(influxd, influx_db, device_lines(series=3, points=60))
    with load_yaml_component(source_attrs(influxd.url, influx_db, target={"schema": raw})) as (
        _c,
        defs,
    ):
        assert run_assets(defs, warehouse_url, partition_key=PARTITION).success
    family = TimescaleAggregateComponent.resolve_from_dict(
        {
            "source": {"schema": raw, "assets": ["plant/m"]},
            "target": {"schema": rollups, "name_prefix": "plant"},
            "partitions": {"start": "2024-03-01", "granularity": "hourly"},
            "buckets": [{"width": "1 minute"}, {"width": "1 hour"}],
        }
    )
    result = dg.materialize(
        assets_of(family),
        partition_key=PARTITION,
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    count = canary.execute(
        sql.SQL("SELECT sum(count) FROM {}").format(sql.Identifier(rollups, "plant_1h"))
    ).fetchone()
    assert count == (3 * 60 * 2,)
    assert_canary_alive(canary)


def lp_escape(text: str, specials: str) -> str:
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


MEASUREMENT = 'm"; DROP MEASUREMENT "canary"; -- /* ünï */'
FIELD = 'p"), DROP MEASUREMENT "canary'
DEVICE = "x' OR \"dev\" = 'y' -- a\\b /.*/"


def test_hostile_influx_names_and_filters_are_literals(
    influxd: LocalInfluxd, influx_db: str, warehouse_url: str, pg_conn: psycopg.Connection
) -> None:
    t = ns(T0)
    measurement = lp_escape(MEASUREMENT, ", ")
    influxd.write_lines(
        influx_db,
        f"canary,dev=c p=1 {t}\n"
        f"{measurement},dev={lp_escape(DEVICE, ',= ')} p=1,{lp_escape(FIELD, ',= ')}=2 {t}\n"
        f"{measurement},dev=y p=3 {t}\n",
    )
    # The tag filter names one odd series: read as InfluxQL, it would also match dev=y.
    filtered = source_attrs(
        influxd.url,
        influx_db,
        measurements=[{"name": MEASUREMENT, "asset_name": "hostile", "tags": {"dev": [DEVICE]}}],
    )
    with load_yaml_component(filtered) as (_c, defs):
        assert run_assets(defs, warehouse_url, partition_key=PARTITION).success
    rows = pg_conn.execute(
        "SELECT t.measurement, t.tags, t.field, h.value FROM raw.influx_hist h "
        "JOIN raw.influx_tag t USING (tag_id)"
    ).fetchall()
    assert sorted(rows, key=lambda row: row[3]) == [
        (MEASUREMENT, {"dev": DEVICE}, "p", 1.0),
        (MEASUREMENT, {"dev": DEVICE}, FIELD, 2.0),
    ]
    # Every series and field, and the counts reconcile.
    everything = source_attrs(
        influxd.url,
        influx_db,
        name="everything",
        measurements=[{"name": MEASUREMENT, "asset_name": "hostile"}],
    )
    with load_yaml_component(everything) as (_c, defs):
        result = run_assets(defs, warehouse_url, partition_key=PARTITION)
    assert check_results(result)[("everything/hostile", "reconciliation")].passed
    assert b'"canary"' in influxd.query("SHOW MEASUREMENTS", db=influx_db)
    assert b'"values":[[' in influxd.query('SELECT count("p") FROM "canary"', db=influx_db)


# -- credentials ------------------------------------------------------------------------------

WAREHOUSE_SECRET = "Wh-S3cr3t-canary-pw"
WRONG_PASSWORD = "wr0ng-canary-pw"


def secrets() -> list[str]:
    """Every secret of the test, and what a Basic authorization header would carry."""
    plain = [SECRET, WRONG_PASSWORD, WAREHOUSE_SECRET]
    encoded = [base64.b64encode(f"admin:{s}".encode()).decode() for s in plain[:2]]
    return plain + encoded


def terminate_copies(url: str) -> None:
    """End the sessions that are copying into the warehouse, as a failover would."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'COPY%%'"
        )


def everything_recorded(instance: dg.DagsterInstance, home: Path) -> dict[str, str]:
    """What the instance keeps and the UI shows: events of every run, run records, job and
    plan snapshots, and every file under the instance's directory (compute logs, databases)."""
    recorded: dict[str, str] = {}
    for run in instance.get_runs():
        recorded[f"run {run.run_id}"] = serialize_value(run)
        recorded[f"events {run.run_id}"] = serialize_value(instance.all_logs(run.run_id))
        if run.job_snapshot_id:
            snapshot = instance.get_job_snapshot(run.job_snapshot_id)
            recorded[f"job snapshot {run.run_id}"] = serialize_value(snapshot)
        if run.execution_plan_snapshot_id:
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            recorded[f"plan snapshot {run.run_id}"] = serialize_value(plan)
    for path in home.rglob("*"):
        if path.is_file():
            recorded[str(path)] = path.read_bytes().decode("latin-1")
    return recorded


def test_credentials_never_leave_their_variables(
    tmp_path: Path,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A source with a password (right, then wrong) and a warehouse URL with a password (and a
    lost session): no secret reaches an event, a log, an error, a snapshot or a repr."""
    caplog.set_level(logging.DEBUG)
    server = start_influxd(tmp_path / "influxd", auth_enabled=True)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    results: dict[str, dg.ExecuteInProcessResult] = {}
    reprs: list[str] = []
    try:
        server.query(f"CREATE USER admin WITH PASSWORD '{SECRET}' WITH ALL PRIVILEGES")
        server.create_database("plant", auth=("admin", SECRET))
        server.write_lines(
            "plant", "\n".join(device_lines(series=5, points=60)), auth=("admin", SECRET)
        )
        # Trust authentication ignores the password, which is still part of the URL.
        monkeypatch.setenv(
            "WAREHOUSE_URL", warehouse_url.replace("postgres:@", f"postgres:{WAREHOUSE_SECRET}@")
        )
        monkeypatch.setenv("PLANT_INFLUX_USER", "admin")
        attrs = source_attrs(
            server.url,
            "plant",
            influx={"username_env": "PLANT_INFLUX_USER", "password_env": "PLANT_INFLUX_PASSWORD"},
        )
        with load_yaml_component(attrs) as (component, defs):
            assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]

            def run() -> dg.ExecuteInProcessResult:
                return dg.materialize(
                    assets,
                    partition_key=PARTITION,
                    instance=instance,
                    resources=platform_resources(),
                    raise_on_error=False,
                )

            monkeypatch.setenv("PLANT_INFLUX_PASSWORD", SECRET)
            results["right password"] = run()
            monkeypatch.setenv("PLANT_INFLUX_PASSWORD", WRONG_PASSWORD)
            results["wrong password"] = run()
            monkeypatch.setenv("PLANT_INFLUX_PASSWORD", SECRET)
            with pytest.MonkeyPatch.context() as patch:
                on_stream(patch, 1, lambda: terminate_copies(warehouse_url))
                results["warehouse session lost"] = run()

            with component.open_reader() as reader:
                reprs += [repr(reader), repr(getattr(reader, "settings", None))]
            reprs += [repr(component), str(component), repr(component.influx)]
            reprs += [repr(r) + str(r) for r in platform_resources().values()]
            resource = WarehouseResource(url=os.environ["WAREHOUSE_URL"])
            reprs += [repr(resource), str(resource)]
    finally:
        server.stop()

    assert results["right password"].success
    assert not results["wrong password"].success
    assert "authorization failed" in failure_text(results["wrong password"])
    assert not results["warehouse session lost"].success
    lost = failure_text(results["warehouse session lost"])
    assert "warehouse postgresql://postgres@" in lost and "unreachable" in lost

    captured = capfd.readouterr()
    places: dict[str, str] = {
        **{
            f"failure of the run with the {k}": failure_text(r)
            for k, r in results.items()
            if not r.success
        },
        **everything_recorded(instance, home),
        "python logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "reprs": "\n".join(reprs),
    }
    assert any("authorization failed" in text for text in places.values())
    for secret in secrets():
        leaks = [place for place, text in places.items() if secret in text]
        assert not leaks, f"{secret!r} appears in {leaks}"


# -- TLS --------------------------------------------------------------------------------------


def test_tls_with_a_private_ca(tmp_path: Path, warehouse_url: str) -> None:
    certificates = make_certificates(tmp_path / "certs")
    stranger = make_certificates(tmp_path / "other", name="other")
    server = TlsInfluxd(tmp_path / "influxd", certificates).start()
    outcomes: dict[str, dg.ExecuteInProcessResult] = {}

    def run(label: str, **influx: Any) -> None:
        attrs = source_attrs(server.url, "plant", influx=influx, max_attempts=3)
        with load_yaml_component(attrs) as (_c, defs):
            outcomes[label] = run_assets(
                defs, warehouse_url, partition_key=PARTITION, raise_on_error=False
            )

    try:
        server.create_database("plant")
        server.write_lines("plant", "\n".join(device_lines(series=2, points=60)))
        run("the CA", ca_cert=str(certificates.ca))
        run("the system CAs")
        run("another CA", ca_cert=str(stranger.ca))
        run("no verification", verify_tls=False)
    finally:
        server.stop()

    for label in ("the CA", "no verification"):
        assert outcomes[label].success, label
        assert check_results(outcomes[label])[("plant/m", "reconciliation")].passed
    for label in ("the system CAs", "another CA"):
        assert not outcomes[label].success, label
        text = failure_text(outcomes[label])
        assert (
            "source 'plant'" in text and f"TLS certificate of {server.url} is not trusted" in text
        )
        assert "CERTIFICATE_VERIFY_FAILED" in text and "influx.ca_cert" in text
        assert "gave up after" not in text  # a certificate is not retried
