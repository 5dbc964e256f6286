"""The README's first command: the demo loads its sample and every sample asset materializes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from data_platform_tests.project_copy import copy_project

pytestmark = pytest.mark.e2e


@pytest.fixture
def project() -> Iterator[Path]:
    # Not under pytest's 0700 temp tree: the embedded PostgreSQL runs as its own user.
    root = Path(tempfile.mkdtemp(prefix="demo-project-"))
    yield copy_project(root / "project")
    shutil.rmtree(root, ignore_errors=True)


def expected_assets(project: Path) -> set[dg.AssetKey]:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "list", "defs", "--json"],
        cwd=project,
        env={**_env(project)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    listing = json.loads(out[out.index("{") :])
    return {dg.AssetKey(a["asset_key_parts"]) for a in listing["assets"]}


def _env(project: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGSTER_CLOUD_", "DATA_PLATFORM_", "INFLUX_", "WAREHOUSE_"))
    }
    env.update(
        PYTHONPATH=str(project),
        DAGSTER_HOME=str(project / ".dagster_home"),
        XDG_RUNTIME_DIR=str(project / ".data" / "run"),
        DATA_PLATFORM_SANDBOX="demo",
    )
    (project / ".data" / "run").mkdir(parents=True, exist_ok=True)
    return env


@pytest.mark.parametrize("source", ["files", "auto"])
def test_demo_materializes_every_sample_asset(project: Path, source: str):
    result = subprocess.run(
        [sys.executable, "-m", "data_platform.demo", "load", "--hours", "3", "--source", source],
        cwd=project,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reading = "line-protocol exports" if source == "files" else "throwaway influxd"
    assert reading in result.stdout

    os.environ["DAGSTER_HOME"] = str(project / ".dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            expected = expected_assets(project)
            materialized = {
                key
                for key in expected
                if instance.get_latest_materialization_event(key) is not None
            }
            runs = instance.get_runs()
            assert runs and all(r.is_success for r in runs)
    finally:
        del os.environ["DAGSTER_HOME"]
    assert materialized == expected
