"""Test helpers: build a component from YAML in a sandbox and run its assets for real."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.definitions.metadata.metadata_value import ObjectMetadataValue
from dagster.components.testing import create_defs_folder_sandbox

from data_platform.lib.warehouse import WarehouseResource


@contextmanager
def load_yaml_component(
    attributes: Mapping[str, Any], type_name: str = "data_platform.lib.InfluxIngestComponent"
) -> Iterator[tuple[Any, dg.Definitions]]:
    """Load one component from a defs.yaml in a temp defs folder; yield it and its defs."""
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "source"
        path.mkdir(parents=True)
        import yaml

        (path / "defs.yaml").write_text(
            yaml.safe_dump({"type": type_name, "attributes": dict(attributes)}, allow_unicode=True)
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            yield component, defs


def run_assets(
    defs: dg.Definitions,
    warehouse_url: str,
    *,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    selection: Sequence[dg.AssetKey] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    prepared_statements: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize the assets (optionally a partition or a range) in one real run."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    tags: dict[str, str] = {}
    if partition_range is not None:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    return dg.materialize(
        assets,
        selection=selection,
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=raise_on_error,
        resources={
            "warehouse": WarehouseResource(
                url=warehouse_url, prepared_statements=prepared_statements
            )
        },
    )


def materializations(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out[mat.asset_key] = {k: v.value for k, v in mat.metadata.items()}
    return out


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """(asset key path string, check name) -> AssetCheckEvaluation."""
    out = {}
    for event in result.get_asset_check_evaluations():
        out[(event.asset_key.to_user_string(), event.check_name)] = event
    return out


def describe_definitions(defs: dg.Definitions) -> dict[str, Any]:
    """Every asset spec as a comparable dict, with its node, and every check key."""
    assets_defs = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    checks = sorted(str(key) for assets_def in assets_defs for key in assets_def.check_keys)
    specs = {
        spec.key.to_user_string(): {
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "metadata": {
                # the component instance itself compares by identity: its class stands for it
                k: v.class_name if isinstance(v, ObjectMetadataValue) else v
                for k, v in spec.metadata.items()
            },
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "partitions": spec.partitions_def,
            "automation": spec.automation_condition,
            "description": spec.description,
            "owners": sorted(spec.owners),
            "tags": spec.tags,
            "node": assets_def.node_def.name,
        }
        for assets_def in assets_defs
        for spec in assets_def.specs
    }
    return {"assets": specs, "checks": checks}


def error_chain(error: BaseException | None) -> str:
    """An exception's message and those of its causes and contexts, one per line."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)
