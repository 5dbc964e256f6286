"""The deployment files of deploy/ are valid and agree with each other (no server, no Docker)."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from data_platform_tests.project_copy import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
STORAGE_ENV = {
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "hostname": "DAGSTER_PG_HOST",
    "db_name": "DAGSTER_PG_DB",
    "port": "DAGSTER_PG_PORT",
}
DAGSTER_SERVICES = ("code", "daemon", "webserver", "dagster-migrate")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def instance_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """deploy/dagster.yaml as Dagster validates it when an instance starts."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))
    return dict(config)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return load("helm/values.yaml")


def test_instance_stores_everything_in_postgres_from_environment(instance_config):
    storage = instance_config["storage"]
    assert list(storage) == ["postgres"]
    postgres_db = storage["postgres"]["postgres_db"]
    assert {key: postgres_db[key] for key in STORAGE_ENV} == {
        key: {"env": name} for key, name in STORAGE_ENV.items()
    }
    assert postgres_db["scheme"] == "postgresql+psycopg2"
    assert instance_config["telemetry"] == {"enabled": False}


def test_instance_queues_runs_and_caps_each_pool_at_two(instance_config):
    coordinator = instance_config["run_coordinator"]
    assert (coordinator["module"], coordinator["class"]) == (
        "dagster.core.run_coordinator",
        "QueuedRunCoordinator",
    )
    pools = instance_config["concurrency"]["pools"]
    assert pools["default_limit"] == 2
    assert pools["granularity"] == "op"
    runs = instance_config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] >= pools["default_limit"]
    backfill_limit = next(
        t["limit"] for t in runs["tag_concurrency_limits"] if t["key"] == "dagster/backfill"
    )
    assert backfill_limit < runs["max_concurrent_runs"], "scheduled runs keep a slot"


def test_workspace_points_at_one_grpc_code_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "code")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4000")
    (origin,) = location_origins_from_yaml_paths([str(DEPLOY / "workspace.yaml")])
    assert isinstance(origin, GrpcServerCodeLocationOrigin)
    assert (origin.host, origin.port, origin.location_name) == ("code", 4000, "data_platform")


def test_compose_runs_sources_warehouse_and_dagster(compose):
    services = compose["services"]
    assert set(services) >= {
        "influxdb",
        "timescaledb",
        "dagster-postgres",
        *DAGSTER_SERVICES,
    }
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb-ha:pg17")
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith((":latest", ":")), f"{name}: pin {image}"
        if "build" in service:
            build = service["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_compose_wires_dagster_like_the_deploy_files(compose):
    services = compose["services"]
    code = services["code"]
    command = code["command"]
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("--module-name") + 1] == "data_platform.definitions"
    assert command[command.index("--port") + 1] == "4000"
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert set(STORAGE_ENV.values()) <= set(env), name
        assert env["DAGSTER_PG_HOST"] == "dagster-postgres"
        assert env["DAGSTER_CODE_SERVER_HOST"] == "code"
        assert env["DAGSTER_CODE_SERVER_PORT"] == "4000"
        assert env["DAGSTER_EVENT_BATCH_SIZE"] == "1000", "a range's events are written in batches"
    assert {"WAREHOUSE_URL", "INFLUX_URL", "INFLUX_DATABASE", "INFLUX_TOKEN"} <= set(
        code["environment"]
    )
    assert "timescaledb:5432/warehouse" in code["environment"]["WAREHOUSE_URL"]
    # Only the code server, whose processes run the assets, holds the sources' secrets.
    for name in ("daemon", "webserver"):
        assert not {"WAREHOUSE_URL", "INFLUX_TOKEN"} & set(services[name]["environment"])
    for name in ("code", "daemon", "webserver"):
        assert services[name]["depends_on"]["dagster-migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_compose_maps_the_influx_bucket_for_the_v1_api(compose):
    influxdb = compose["services"]["influxdb"]
    env = influxdb["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert {"DOCKER_INFLUXDB_INIT_ADMIN_TOKEN", "V1_DB_NAME", "V1_RP_NAME"} <= set(env)
    mounts = {m.split(":")[1]: m.split(":")[0] for m in influxdb["volumes"] if m.startswith("./")}
    script = DEPLOY / mounts["/docker-entrypoint-initdb.d/init-dbrp.sh"]
    text = script.read_text()
    assert "influx v1 dbrp create" in text
    assert "${V1_DB_NAME}" in text and "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" in text


def test_compose_variables_are_all_in_the_env_example(compose):
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert used <= documented, f"add to deploy/.env.example: {sorted(used - documented)}"


def test_dockerfile_installs_the_locked_environment():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, flags=re.MULTILINE)
    assert "uv sync --frozen" in text
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml" in text


def test_helm_values_use_the_chart_keys_and_the_same_limits(helm, instance_config):
    deployments = helm["dagster-user-deployments"]
    assert deployments["enabled"] is True
    (code,) = deployments["deployments"]
    args = code["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "data_platform.definitions"
    assert code["image"]["repository"] and code["image"]["tag"] not in ("", "latest")
    assert {"name": "data-platform-env"} in code["envSecrets"]
    assert code["env"]["DAGSTER_EVENT_BATCH_SIZE"] == "1000"

    launcher = helm["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert {"name": "data-platform-env"} in launcher["config"]["k8sRunLauncher"]["envSecrets"]

    coordinator = helm["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    # With pools configured, run limits belong to `concurrency`, as the chart requires.
    assert "maxConcurrentRuns" not in queued and "tagConcurrencyLimits" not in queued
    instance_coordinator = instance_config["run_coordinator"]["config"]
    assert queued["dequeueUseThreads"] == instance_coordinator["dequeue_use_threads"]
    assert queued["dequeueNumWorkers"] == instance_coordinator["dequeue_num_workers"]

    concurrency = helm["concurrency"]
    assert concurrency["enabled"] is True
    pools = instance_config["concurrency"]["pools"]
    assert concurrency["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
        "opGranularityRunBuffer": pools["op_granularity_run_buffer"],
    }
    runs = instance_config["concurrency"]["runs"]
    assert concurrency["runs"] == {
        "maxConcurrentRuns": runs["max_concurrent_runs"],
        "tagConcurrencyLimits": runs["tag_concurrency_limits"],
    }

    postgresql = helm["postgresql"]
    assert (
        postgresql["postgresqlScheme"]
        == instance_config["storage"]["postgres"]["postgres_db"]["scheme"]
    )
    assert postgresql["postgresqlHost"] and postgresql["postgresqlDatabase"]
    assert helm["telemetry"] == {"enabled": False}


def test_readme_documents_every_deploy_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name not in {"README.md", "Dockerfile.dockerignore"}:
            assert f"`{path.relative_to(DEPLOY).as_posix()}`" in readme, path
