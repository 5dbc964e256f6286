"""A temp copy of the project, and `dg` run in it as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).with_name("dg"))


def copy_project(dest: Path) -> Path:
    """Copy the project's files (tracked and untracked, not ignored) to `dest`."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        if "node_modules" in rel or not (PROJECT_ROOT / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, target)
    return dest


def dg(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `dg` in the copy; its package shadows the installed checkout through PYTHONPATH."""
    home = project / ".dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGSTER_CLOUD_", "DATA_PLATFORM_", "INFLUX_", "WAREHOUSE_"))
    }
    full_env.update(
        {
            "PYTHONPATH": str(project),
            "DAGSTER_HOME": str(home),
            "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
        }
    )
    full_env.update(env or {})
    return subprocess.run(
        [DG, *args], cwd=project, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def list_defs(project: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = dg(project, "list", "defs", "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{") :])
