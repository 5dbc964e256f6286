"""Dagster's YAML-with-source-positions parser, on libyaml's C parser.

`dagster_shared.yaml_utils.parse_yamls_with_source_position` reads every `defs.yaml` with
PyYAML's pure-Python parser, about 3.5 ms for a 40-line file here: at thousands of files it is
the largest single cost of loading the defs folder. This is the same loader (the same
constructor and resolvers, timestamps left as strings, the same value and position trees) on
the C parser, about ten times faster. Anything it cannot parse goes back to Dagster's parser,
so YAML errors read exactly as Dagster reports them.
"""

from collections.abc import Mapping, Sequence
from typing import Any, cast

import yaml
from dagster_shared.yaml_utils import (
    YAML_TIMESTAMP_TAG,
    _CanRemoveImplicitResolver,
)
from dagster_shared.yaml_utils import (
    parse_yamls_with_source_position as parse_with_python_parser,
)
from dagster_shared.yaml_utils.source_position import (
    KeyPathSegment,
    LineCol,
    SourcePosition,
    SourcePositionTree,
    ValueAndSourcePositionTree,
)

AVAILABLE: bool = yaml.__with_libyaml__
_Loader: type = yaml.CSafeLoader if AVAILABLE else yaml.SafeLoader


class _PositionLoader(_Loader, _CanRemoveImplicitResolver):
    filename = "<string>"  # set per file: libyaml's loader takes nothing but the stream

    def construct_object(self, node: Any, deep: Any = False) -> ValueAndSourcePositionTree:
        position = SourcePosition(
            filename=self.filename,
            start=LineCol(line=node.start_mark.line + 1, col=node.start_mark.column + 1),
            end=LineCol(line=node.end_mark.line + 1, col=node.end_mark.column + 1),
        )
        value = super().construct_object(node, True)
        children: dict[KeyPathSegment, SourcePositionTree] = {}
        if isinstance(value, dict):
            raw: Any = {}
            for k, v in cast(
                "Mapping[ValueAndSourcePositionTree, ValueAndSourcePositionTree]", value
            ).items():
                raw[k.value] = v.value
                children[k.value] = SourcePositionTree(
                    position=k.source_position_tree.position,
                    children=v.source_position_tree.children,
                )
        elif isinstance(value, list):
            raw = []
            for i, v in enumerate(cast("Sequence[ValueAndSourcePositionTree]", value)):
                raw.append(v.value)
                children[i] = v.source_position_tree
        else:
            raw = value
        return ValueAndSourcePositionTree(
            raw, SourcePositionTree(position=position, children=children)
        )


_PositionLoader.remove_implicit_resolver(YAML_TIMESTAMP_TAG)


def parse(
    src: str,
    filename: str = "<string>",
    implicits_to_remove: Sequence[str] = (YAML_TIMESTAMP_TAG,),
) -> list[ValueAndSourcePositionTree]:
    """Drop-in for Dagster's `parse_yamls_with_source_position`."""
    if not AVAILABLE or list(implicits_to_remove) != [YAML_TIMESTAMP_TAG]:
        return parse_with_python_parser(src, filename, implicits_to_remove)
    loader = _PositionLoader(src)
    loader.filename = filename
    try:
        documents: list[ValueAndSourcePositionTree] = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except Exception:
        return parse_with_python_parser(src, filename, implicits_to_remove)
    finally:
        loader.dispose()
