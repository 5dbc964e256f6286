"""The historian package is psycopg only: none of its modules imports Dagster."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import data_platform.lib.historian as historian


def test_no_module_of_the_package_imports_dagster() -> None:
    modules = [f"{historian.__name__}.{m.name}" for m in pkgutil.iter_modules(historian.__path__)]
    assert {m.rsplit(".", 1)[1] for m in modules} >= {
        "copy",
        "errors",
        "locks",
        "registry",
        "signals",
        "tables",
        "window",
    }
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'dagster' not in sys.modules, sorted(m for m in sys.modules if 'dagster' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
