"""The reader package: free of Dagster, settings validated in one place, caches per object."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from data_platform.lib.influx.reader import files
from data_platform.lib.influx.reader.errors import InfluxConfigError, InfluxSettingsError
from data_platform.lib.influx.reader.parser import LineParser
from data_platform.lib.influx.reader.settings import (
    Credentials,
    InfluxSettings,
    check_database,
    check_url,
)
from data_platform.lib.influx.reader.source import LineProtocolSource
from data_platform.lib.influx.specs import InfluxServerSpec

PACKAGE = Path(__file__).resolve().parents[4] / "data_platform" / "lib" / "influx" / "reader"
MODULES = sorted(
    f"data_platform.lib.influx.reader.{p.stem}"
    for p in PACKAGE.glob("*.py")
    if p.stem != "__init__"
)


def test_every_module_imports_without_dagster() -> None:
    assert {"client", "connection", "files", "source", "settings", "wire"} <= {
        m.rsplit(".", 1)[1] for m in MODULES
    }
    code = "; ".join(
        [*(f"import {m}" for m in MODULES), "import sys", "assert 'dagster' not in sys.modules"]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parents[3]
    )
    assert result.returncode == 0, result.stderr


def test_settings_hold_no_secrets_and_credentials_hide_theirs() -> None:
    settings = InfluxSettings(url=" http://influx:8086/ ", database="plant")
    assert settings.url == "http://influx:8086"
    assert not {"username", "password", "token"} & set(settings.__dataclass_fields__)
    credentials = Credentials(username="reader", password="s3cret-pw")
    assert "s3cret-pw" not in repr(credentials) and "reader" in repr(credentials)
    assert credentials.secrets == ("s3cret-pw",)
    with pytest.raises(InfluxConfigError, match="a password is set without a username"):
        Credentials(password="s3cret-pw")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8086", r"is not an http\(s\) URL"),
        ("http://admin:hunter2@influx:8086", "credentials in the URL"),
        ("http://influx:8086/?db=x", "query string"),
    ],
)
def test_one_url_check_for_the_yaml_and_the_reader(url: str, message: str) -> None:
    with pytest.raises(InfluxSettingsError, match=message) as direct:
        check_url(url)
    assert "hunter2" not in str(direct.value)
    with pytest.raises(InfluxConfigError) as built:
        InfluxSettings(url=url, database="plant")
    assert str(built.value) == str(direct.value)
    with pytest.raises(ValueError) as loaded:  # pydantic's ValidationError is a ValueError
        InfluxServerSpec(url=url, database="plant")
    assert str(direct.value) in str(loaded.value)
    with pytest.raises(ValueError, match="name the database"):
        check_database(" ")


def test_settings_errors_survive_pickling() -> None:
    error = InfluxSettingsError("influx.url", "'x' is not an http(s) URL")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InfluxSettingsError and str(copy) == str(error)
    assert isinstance(copy, ValueError) and copy.setting == "influx.url"


def test_parsers_keep_their_own_series_cache() -> None:
    first, second = LineParser(1), LineParser(1)
    assert first.parse("m,t=a v=1 1") == second.parse("m,t=a v=1 1")
    assert first._series == {"m,t=a": ("m", (("t", "a"),))}
    first.parse("n v=1 1")
    assert "n" not in second._series


def test_each_source_indexes_its_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.lp"
    path.write_text("m,t=a v=1 1\n", encoding="utf-8")
    reads: list[str] = []
    read_points = files.read_points

    def spy(path: Path, **kwargs: object):
        reads.append(path.name)
        return read_points(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "read_points", spy)
    source = LineProtocolSource(str(path))
    assert source.list_measurements() == ["m"] and source.list_measurements() == ["m"]
    assert reads == ["a.lp"]
    assert LineProtocolSource(str(path)).list_measurements() == ["m"]
    assert reads == ["a.lp", "a.lp"]  # a new source has its own index
