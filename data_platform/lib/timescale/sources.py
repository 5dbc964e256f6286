"""Which ingest assets a rollup family reads: an explicit list, a selection or the table's writers.

Resolved when definitions load, from the ingest components' YAML alone (no server): the project's
`InfluxIngestComponent`s are read once per component tree into a catalogue of their assets, the
table each writes and its partitions.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

from data_platform.lib.timescale.plan import RollupConfigError
from data_platform.lib.timescale.specs import SourceSpec
from data_platform.lib.timing.errors import YamlPath, yaml_path_text
from data_platform.lib.timing.partitions import Partitions

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from data_platform.lib.influx.component import InfluxIngestComponent


@dataclass(frozen=True, slots=True)
class IngestAsset:
    """One measurement asset of an ingest component: what it writes and how it is partitioned."""

    key: dg.AssetKey
    table: str
    """`schema.table` of the value table it writes."""
    partitions: Partitions
    defs_file: str


@dataclass(slots=True)
class IngestCatalogue:
    """Every ingest asset of a project (registry assets are never rollup inputs)."""

    assets: dict[dg.AssetKey, IngestAsset]
    specs: list[dg.AssetSpec]
    """Measurement and registry specs, for resolving asset selections."""
    _graph: AssetGraph | None = field(default=None)

    @staticmethod
    def of(ingests: Sequence[InfluxIngestComponent]) -> IngestCatalogue:
        assets: dict[dg.AssetKey, IngestAsset] = {}
        specs: list[dg.AssetSpec] = []
        for ingest in ingests:
            plan = ingest.ingest_plan()
            table = f"{plan.tables.schema}.{plan.tables.table}"
            for measurement in plan.measurements:
                spec = ingest.get_asset_spec(measurement)
                specs.append(spec)
                assets[spec.key] = IngestAsset(spec.key, table, plan.partitions, ingest.defs_file)
            specs.append(ingest.get_registry_spec())
        return IngestCatalogue(assets, specs)

    def graph(self) -> AssetGraph:
        if self._graph is None:
            self._graph = AssetGraph.from_assets(
                [dg.AssetsDefinition(specs=[s]) for s in self.specs]
            )
        return self._graph

    def select(self, selection: str, path: YamlPath) -> list[dg.AssetKey]:
        """The ingest assets an asset selection string matches, in catalogue order."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = dg.AssetSelection.from_string(selection, include_sources=True)
                matched = parsed.resolve(self.graph(), allow_missing=True)
        except Exception as exc:
            raise RollupConfigError(
                path,
                f"{selection!r} is not an asset selection ({type(exc).__name__}: {exc})",
                "write Dagster's asset selection syntax, e.g. 'kind:influxdb and group:plant_a' "
                "or 'key:plant_*/*'",
            ) from None
        return [key for key in self.assets if key in matched]


_recent: list[tuple[Any, IngestCatalogue]] = []
"""(component tree, its catalogue) of the last few trees. A component tree takes no weak
reference; holding the tree itself keeps its id from being reused by another one."""
_RECENT_TREES = 4


def ingest_catalogue(context: dg.ComponentLoadContext) -> IngestCatalogue:
    """The project's ingest assets, read once per component tree (not once per rollup family)."""
    from data_platform.lib.influx.component import InfluxIngestComponent

    tree = context.component_tree
    for known, catalogue in _recent:
        if known is tree:
            return catalogue
    # The loaded component tree, not a new walk of the declarations: definitions are built
    # once every component of the defs folder has loaded.
    found = [c for c in _loaded(tree.load_root_component()) if isinstance(c, InfluxIngestComponent)]
    catalogue = IngestCatalogue.of(found)
    _recent.insert(0, (tree, catalogue))
    del _recent[_RECENT_TREES:]
    return catalogue


def _loaded(component: Any) -> Iterator[Any]:
    """A component and those it holds: folders' `children`, YAML files' `components`."""
    yield component
    for attribute in ("children", "components"):
        held = getattr(component, attribute, None)
        if isinstance(held, Mapping):
            held = held.values()
        if isinstance(held, Sequence | ValuesView):
            for child in held:
                yield from _loaded(child)


@dataclass(frozen=True, slots=True)
class ResolvedSources:
    keys: tuple[dg.AssetKey, ...]
    partitions: Partitions | None
    """Shared by the ingest components writing `keys`; None when none of them is known."""
    partitions_file: str | None = None
    left_out: tuple[IngestAsset, ...] = ()
    """Writers of the table that `all_writers` leaves out: partitioned unlike the family."""


def resolve_sources(
    context: dg.ComponentLoadContext,
    spec: SourceSpec,
    table: str,
    partitions: Partitions | None = None,
) -> ResolvedSources:
    """The rollups' input assets under the YAML's rule, and their shared partitions.

    With the family's own `partitions`, `all_writers` takes the writers partitioned the same way
    and leaves the others out with a warning (a run holds assets of one partitions definition).
    """
    catalogue = ingest_catalogue(context)
    if spec.select is not None:
        path: YamlPath = ("source", "select")
        keys = catalogue.select(spec.select, path)
        if not keys:
            raise RollupConfigError(
                path,
                f"{spec.select!r} matches no ingest asset of the project",
                "fix the selection (`dg list defs --assets '<selection>'` shows what it "
                f"matches); ingest assets: {_sample(catalogue.assets)}",
            )
        others = [catalogue.assets[k] for k in keys if catalogue.assets[k].table != table]
        if others:
            shown = ", ".join(
                f"{a.key.to_user_string()} writes {a.table} ({a.defs_file})" for a in others[:3]
            )
            raise RollupConfigError(
                path,
                f"{spec.select!r} matches assets that write another table than {table}: {shown}",
                "narrow the selection (e.g. add `and group:<source>`), or use "
                "`all_writers: true` for every ingest asset that writes this table",
            )
    elif spec.all_writers:
        path = ("source", "all_writers")
        writers = [asset for asset in catalogue.assets.values() if asset.table == table]
        left_out = tuple(
            a for a in writers if partitions is not None and a.partitions != partitions
        )
        keys = [a.key for a in writers if a not in left_out]
        for asset in left_out:
            assert partitions is not None
            logger.warning(
                f"{asset.key.to_user_string()} ({asset.defs_file}) writes {table} with "
                f"{describe(asset.partitions)}, not the rollups' {describe(partitions)}"
                " (partitions): it is left out of source.all_writers. Fix: give it the same "
                "partitions, or give it a rollup family of its own"
            )
        if not keys and left_out:
            raise RollupConfigError(
                ("partitions",),
                "rollups and their sources must share a partitions definition, and every "
                f"ingest asset writing {table} is partitioned otherwise: "
                f"{left_out[0].defs_file} has {describe(left_out[0].partitions)}",
                "leave `partitions` out to take the sources', or make it equal",
            )
        if not keys:
            raise RollupConfigError(
                path,
                f"no ingest component of the project writes {table}",
                "set source.schema and source.table to the ingest's target, or add the ingest "
                "YAML first",
            )
        return ResolvedSources(tuple(keys), *_shared_partitions(catalogue, keys, path), left_out)
    else:
        path = ("source", "assets")
        keys = [dg.AssetKey.from_user_string(k) for k in spec.assets]
    return ResolvedSources(tuple(keys), *_shared_partitions(catalogue, keys, path))


def _shared_partitions(
    catalogue: IngestCatalogue, keys: Sequence[dg.AssetKey], path: YamlPath
) -> tuple[Partitions | None, str | None]:
    found: dict[Partitions, str] = {}
    for key in keys:
        asset = catalogue.assets.get(key)
        if asset is not None:
            found.setdefault(asset.partitions, asset.defs_file)
    if len(found) > 1:
        (first, first_file), (second, second_file) = list(found.items())[:2]
        raise RollupConfigError(
            path,
            f"the ingest components writing {yaml_path_text(path)} differ, and one rollup "
            f"family shares one partitions definition: {first_file} has {describe(first)}, "
            f"{second_file} has {describe(second)}",
            "give those ingest components the same partitions (start, granularity, end_offset), "
            "or give them rollup families of their own",
        )
    return next(iter(found.items()), (None, None))


def check_same_partitions(resolved: ResolvedSources, partitions: Partitions) -> None:
    """Rollups and their sources share one partitions definition (a run can hold both)."""
    if resolved.partitions is not None and resolved.partitions != partitions:
        raise RollupConfigError(
            ("partitions",),
            "rollups and their sources must share a partitions definition: "
            f"{resolved.partitions_file} has {describe(resolved.partitions)}, this file "
            f"{describe(partitions)}",
            "leave `partitions` out to take the sources' partitions, or make it equal",
        )


def describe(partitions: Partitions) -> str:
    text = f"start {partitions.start.isoformat()} {partitions.granularity}"
    return text + (f" end_offset {partitions.end_offset}" if partitions.end_offset else "")


def _sample(assets: dict[dg.AssetKey, IngestAsset]) -> str:
    keys = [k.to_user_string() for k in assets]
    if not keys:
        return "none (no InfluxIngestComponent in the project)"
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
