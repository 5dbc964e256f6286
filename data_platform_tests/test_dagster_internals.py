"""The Dagster internals the platform's shims build on are the ones they were written against.

`data_platform/utils/dagster_shims/` stands in for a few private Dagster functions to make
catalogue-scale loading linear and fast. Equivalence tests compare their results with Dagster's,
but only on the inputs they try; at run time the shims switch themselves off when an installed
Dagster's function differs from its fingerprint. This test fails as soon as the locked Dagster
differs, so that a lock upgrade asks someone to read the new version before the platform relies
on it again: adapt the shim (or drop it if Dagster fixed the cost upstream), then update the
fingerprint in `data_platform/utils/dagster_shims/fingerprints.py`.
"""

import json
import os
import pprint
import subprocess
import sys
import textwrap

import pytest

from data_platform.utils.dagster_shims import switch
from data_platform.utils.dagster_shims.fingerprints import PINNED, installed_fingerprint
from data_platform.utils.dagster_shims.switch import SWITCH, DagsterShimsSettingError
from data_platform_tests.helpers import describe_definitions


@pytest.mark.parametrize("name", PINNED, ids=lambda name: name.split(":")[1])
def test_dagster_function_is_unchanged(name: str):
    expected = PINNED[name]
    now = installed_fingerprint(name)
    assert now == expected.fingerprint, (
        f"Dagster's {name} changed: read the new version, adapt "
        f"data_platform/utils/dagster_shims/{expected.shim} (or drop it), then pin {now!r} in "
        "data_platform/utils/dagster_shims/fingerprints.py"
    )


def test_shims_are_on_with_the_locked_dagster(monkeypatch):
    monkeypatch.delenv(SWITCH, raising=False)
    assert switch.active()


@pytest.mark.parametrize("setting, on", [("on", True), ("1", True), ("TRUE", True), (" off ", False), ("0", False), ("false", False)])  # fmt: skip
def test_the_switch(monkeypatch, setting: str, on: bool):
    monkeypatch.setenv(SWITCH, setting)
    assert switch.active() is on


def test_a_setting_that_is_neither_on_nor_off_is_refused(monkeypatch):
    monkeypatch.setenv(SWITCH, "of")
    with pytest.raises(DagsterShimsSettingError, match="DATA_PLATFORM_DAGSTER_SHIMS='of'"):
        switch.active()


DRIFTED_LOAD = """\
import json, pprint, warnings
from data_platform.utils.dagster_shims import fingerprints, switch
from data_platform.utils.dagster_shims.fingerprints import Pin

name = {name!r}
fingerprints.PINNED[name] = Pin("0123456789abcdef", fingerprints.PINNED[name].shim)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from data_platform.definitions import defs
    from data_platform_tests.helpers import describe_definitions
    first = describe_definitions(defs())
    second = describe_definitions(defs())
print(json.dumps({{
    "warnings": [[w.category.__name__, str(w.message)] for w in caught
                 if issubclass(w.category, switch.DagsterShimsDisabledWarning)],
    "active": switch.active(),
    "same_twice": first == second,
    "definitions": pprint.pformat(first),
}}))
"""


def test_a_changed_dagster_function_turns_the_shims_off_with_one_warning():
    """A process whose Dagster differs loads the same definitions, without the shims, warning once."""
    from data_platform.definitions import defs

    name = "dagster.components.resolved.base:resolve_fields"
    env = {k: v for k, v in os.environ.items() if k != SWITCH}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIFTED_LOAD.format(name=name))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["active"] is False
    assert len(report["warnings"]) == 1
    category, message = report["warnings"][0]
    assert category == "DagsterShimsDisabledWarning"
    assert name in message and "resolution.py" in message
    assert "Dagster's own loader" in message
    assert report["same_twice"]
    on = describe_definitions(defs())  # type: ignore[call-arg]
    assert report["definitions"] == pprint.pformat(on)  # dicts sorted: order is no difference
    assert "plant_north/inverter" in report["definitions"]
