"""Whether the shims are on: `DATA_PLATFORM_DAGSTER_SHIMS`, and the installed Dagster's fingerprints.

`DATA_PLATFORM_DAGSTER_SHIMS=off` (or `0`, `false`) turns every shim off, so the platform loads
through Dagster's own loader and resolution; unset, `on`, `1` or `true` leave them on. They are
also off, for the whole process, when a Dagster function a shim stands in for is not the one it
was written against: one `DagsterShimsDisabledWarning` names the function, and loading goes on
with Dagster's own (slower at catalogue scale) code instead of failing.
"""

import functools
import os
import warnings

from data_platform.utils.dagster_shims.fingerprints import PINNED, drifted

SWITCH = "DATA_PLATFORM_DAGSTER_SHIMS"
ON = ("", "on", "1", "true")
OFF = ("off", "0", "false")


class DagsterShimsDisabledWarning(UserWarning):
    """The installed Dagster differs from the one the shims were written against."""


class DagsterShimsSettingError(ValueError):
    """`DATA_PLATFORM_DAGSTER_SHIMS` holds something other than on or off."""


def requested() -> bool:
    """What `DATA_PLATFORM_DAGSTER_SHIMS` asks for (on when unset)."""
    setting = os.environ.get(SWITCH, "").strip().lower()
    if setting in ON:
        return True
    if setting in OFF:
        return False
    raise DagsterShimsSettingError(
        f"{SWITCH}={setting!r} is neither on nor off: unset it (shims on) or set it to "
        f"one of {', '.join(OFF)} (Dagster's own loader)"
    )


@functools.cache
def dagster_matches() -> bool:
    """Whether every pinned Dagster function is unchanged; warns once per process if not."""
    changed = drifted()
    if not changed:
        return True
    names = ", ".join(
        f"{name} (fingerprint {now or 'gone'}, shim {PINNED[name].shim})"
        for name, now in sorted(changed.items())
    )
    warnings.warn(
        f"The installed Dagster changed {len(changed)} function(s) the platform's shims stand in "
        f"for: {names}. Every shim is off: the defs folder loads through Dagster's own loader and "
        "resolution, which give the same definitions but are slower at catalogue scale. See "
        "data_platform/utils/dagster_shims/README.md to review the shims and pin the new "
        "fingerprints.",
        DagsterShimsDisabledWarning,
        stacklevel=2,
    )
    return False


def active() -> bool:
    """Whether the shims are in use: asked for, and written for the installed Dagster."""
    return requested() and dagster_matches()
