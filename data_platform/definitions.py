"""The code location: every defs.yaml, plus platform-wide policy, resources and sensors."""

import warnings
from datetime import timedelta
from pathlib import Path

import dagster as dg

from data_platform.lib.warehouse import WarehouseResource
from data_platform.utils.alerts import build_alert_sensors
from data_platform.utils.dagster_shims.initial_load import reuse_initial_load
from data_platform.utils.defs_folder import load_defs_folder
from data_platform.utils.environment_helpers import get_environment, get_warehouse_options
from data_platform.utils.source_code import code_reference_linker

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The preview/beta APIs used here are those of Dagster 1.13 (the range pyproject allows); their
# warnings are noise in `dg`.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# Where an asset sets no freshness policy of its own.
DEFAULT_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=6)
)


def with_default_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    if spec.freshness_policy is not None:
        return spec
    return spec.replace_attributes(freshness_policy=DEFAULT_FRESHNESS)


def platform_resources() -> dict[str, object]:
    """Resources per deployment; secrets are EnvVars, resolved only when a run starts."""
    pool_size = 8 if get_environment() in ("prod", "staging") else 4
    return {
        "warehouse": WarehouseResource(
            url=dg.EnvVar("WAREHOUSE_URL"), max_connections=pool_size, **get_warehouse_options()
        )
    }


def global_sensors() -> list[dg.SensorDefinition]:
    """Alerts, and declarative automation for every asset, running from the start."""
    automation = dg.AutomationConditionSensorDefinition(
        "automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING
    )
    return [automation, *build_alert_sensors()]


@dg.definitions
@reuse_initial_load
def defs() -> dg.Definitions:
    sources = load_defs_folder(Path(__file__).parent)
    platform = dg.Definitions(resources=platform_resources(), sensors=global_sensors())
    merged = dg.Definitions.merge(sources, platform)
    add_code_references = code_reference_linker(merged, PROJECT_ROOT)
    # One pass over the assets: rebuilding every asset definition is costly at catalogue scale.
    return merged.permissive_map_resolved_asset_specs(
        lambda spec: add_code_references(with_default_freshness(spec)), selection=None
    )
