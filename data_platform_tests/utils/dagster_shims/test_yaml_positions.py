"""The libyaml reader of defs.yaml files returns exactly what Dagster's own reader returns."""

import subprocess
from pathlib import Path

import pytest
import yaml
from dagster_shared.yaml_utils import parse_yamls_with_source_position as dagster_parse

from data_platform.utils.dagster_shims import yaml_positions

PROJECT_ROOT = Path(__file__).resolve().parents[3]

TRICKY_DOCUMENTS = {
    "scalars": "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: '1'\ng: \"x\\ty\"\nh: 0o17\ni: .inf\n",
    "dates stay strings": "start: 2025-01-01\nat: 2025-01-01T10:00:00Z\n",
    "multi-document": "type: a\n---\ntype: b\nattributes: {x: 1}\n",
    "anchors and merge keys": "base: &b {x: 1, y: [1, 2]}\nother:\n  <<: *b\n  z: 3\nref: *b\n",
    "block scalars": "keep: |+\n  a\n\nstrip: >-\n  folded\n  text\nplain: |\n  line\n",
    "flow collections": "a: [1, {b: 2, c: [3, 4]}, 'x']\nd: {e: f}\n",
    "nested lists of mappings": "m:\n  - name: inverter\n    tags: [a, b]\n  - name: meter\n",
    "unicode and quoting": "'quoted key': \"é 漢字 🚀\"\n\"a;b\": 'it''s'\nk: \"line\\nbreak\"\n",
    "non-string keys": "1: one\ntrue: yes\nnull: nothing\n",
    "comments only": "# nothing here\n",
    "empty": "",
    "explicit document end": "a: 1\n...\n",
    "windows newlines": "a: 1\r\nb:\r\n  - x\r\n",
    "deep": "a:\n  b:\n    c:\n      d:\n        - e: {f: [g]}\n",
}

BAD_DOCUMENTS = {
    "unclosed flow": "a: [1, 2\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
    "tab indentation": "a:\n\tb: 1\n",
    "duplicate anchor alias": "a: *missing\n",
    "unclosed quote": "a: 'x\n",
}


def repository_yaml_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [PROJECT_ROOT / name for name in listing if "node_modules" not in name]


def test_libyaml_is_there():
    # The wheels on PyPI ship it; without it the reader silently falls back to the slow path.
    assert yaml_positions.AVAILABLE


@pytest.mark.parametrize("path", repository_yaml_files(), ids=lambda p: str(p.name))
def test_every_yaml_file_of_the_repository_reads_the_same(path: Path):
    text = path.read_text()
    assert yaml_positions.parse(text, str(path)) == dagster_parse(text, str(path))


@pytest.mark.parametrize("text", TRICKY_DOCUMENTS.values(), ids=TRICKY_DOCUMENTS.keys())
def test_values_and_positions_are_the_same(text: str):
    ours = yaml_positions.parse(text, "defs.yaml")
    assert ours == dagster_parse(text, "defs.yaml")
    for document in ours:
        assert document.source_position_tree.position.filename == "defs.yaml"


def test_dates_stay_strings():
    [document] = yaml_positions.parse("start: 2025-01-01\n", "defs.yaml")
    assert document.value == {"start": "2025-01-01"}


@pytest.mark.parametrize("text", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_bad_yaml_fails_with_dagsters_own_error(text: str):
    with pytest.raises(yaml.YAMLError) as ours:
        yaml_positions.parse(text, "plants/x/defs.yaml")
    with pytest.raises(yaml.YAMLError) as theirs:
        dagster_parse(text, "plants/x/defs.yaml")
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)
    assert "plants/x/defs.yaml" in str(ours.value)


def test_other_resolver_settings_use_dagsters_reader(monkeypatch):
    calls = []
    monkeypatch.setattr(
        yaml_positions,
        "parse_with_python_parser",
        lambda *args: calls.append(args) or dagster_parse(*args),
    )
    yaml_positions.parse("a: 2025-01-01\n", "x.yaml", implicits_to_remove=[])
    yaml_positions.parse("a: 1\n", "x.yaml")
    assert len(calls) == 1
