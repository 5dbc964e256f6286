"""A Dagster webserver on a copy of the project, headless Chromium to look at it, and what the
project's YAML says the UI must show."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import psutil
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")

# The UI is a lazily loading React app and this machine is slow: every wait allows this long.
UI_TIMEOUT = 60.0
CODE_LOCATION_TIMEOUT = 240.0
WINDOW_SIZE = (1600, 1000)

# Headless, as root, with no network but loopback: without the background-networking flags
# Chromium keeps trying to reach its update, sync and metrics services.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--password-store=basic",
    f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
)

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


# -- what the UI must show ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedAsset:
    """An asset that a `defs.yaml` of the project defines, as `dg list defs` reports it."""

    key_parts: tuple[str, ...]
    group: str
    checks: frozenset[str]
    source: str

    @property
    def key(self) -> str:
        return "/".join(self.key_parts)

    @property
    def label(self) -> str:
        """The name an asset node of the lineage graph shows: the last part of the key."""
        return self.key_parts[-1]

    @property
    def checks_path(self) -> str:
        return (
            "/assets/" + "/".join(quote(part, safe="") for part in self.key_parts) + "?view=checks"
        )


def expected_assets(project: Path, listing: dict[str, Any]) -> list[ExpectedAsset]:
    """The assets (with their checks) that come from the project's `defs.yaml` files."""
    yaml_files = {
        path.relative_to(project).as_posix()
        for path in (project / "data_platform" / "defs").rglob("defs.yaml")
    }
    checks: dict[str, set[str]] = {}
    for check in listing.get("asset_checks", []):
        checks.setdefault(check["asset_key"], set()).add(check["name"])
    assets = [
        ExpectedAsset(
            key_parts=tuple(asset["asset_key_parts"]),
            group=asset["group_name"],
            checks=frozenset(checks.get(asset["asset_key"], ())),
            source=asset["source"],
        )
        for asset in listing["assets"]
        if (asset.get("source") or "").rpartition(":")[0] in yaml_files
    ]
    return sorted(assets, key=lambda asset: (asset.source, asset.key))


def group_path(repository: str, location: str, group: str) -> str:
    """The page that draws one asset group's lineage graph (Dagster's `assetGroupPath`)."""
    address = quote(location, safe="")
    if repository != "__repository__":
        address = f"{quote(repository, safe='')}@{address}"
    return f"/locations/{address}/asset-groups/{quote(group, safe='')}"


# -- the webserver --------------------------------------------------------------------------------


@dataclass
class Webserver:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def graphql(self, query: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_for_code_location(self, timeout: float = CODE_LOCATION_TIMEOUT) -> tuple[str, str]:
        """Wait until GraphQL answers with the loaded code location; return (repository,
        location). A code location that fails to load fails the test with Dagster's error."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"dagster-webserver exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                workspace = self.graphql(WORKSPACE_QUERY)["data"]["workspaceOrError"]
            except (httpx.HTTPError, KeyError, TypeError, json.JSONDecodeError) as error:
                last = repr(error)
            else:
                last = json.dumps(workspace)[:2000]
                for entry in workspace.get("locationEntries") or []:
                    loaded = entry.get("locationOrLoadError") or {}
                    if loaded.get("__typename") == "PythonError":
                        pytest.fail(
                            f"code location {entry['name']} failed to load:\n"
                            f"{loaded['message']}{''.join(loaded.get('stack') or [])}"
                        )
                    if entry.get("loadStatus") == "LOADED" and loaded.get("repositories"):
                        return loaded["repositories"][0]["name"], entry["name"]
            time.sleep(1)
        pytest.fail(
            f"the code location did not load within {timeout:.0f} s (last answer: {last}):\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        stop_process_tree(self.process.pid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_webserver(project: Path, home: Path, log: Path) -> Webserver:
    """`dagster-webserver` on the project's code location, with nothing but loopback.

    No daemon runs beside it, so no automation or sensor launches a run while the UI is looked at.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The "join the community" dialog of a new instance would cover the page.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    workspace = home / "workspace.yaml"
    location = {
        "module_name": "data_platform.definitions",
        "working_directory": str(project),
        # The name `dg dev` gives the project's code location.
        "location_name": project.name,
    }
    workspace.write_text(json.dumps({"load_from": [{"python_module": location}]}))
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_CLOUD_", "DATA_PLATFORM_", "INFLUX_", "WAREHOUSE_"))
    }
    env.update({"PYTHONPATH": str(project), "DAGSTER_HOME": str(home)})
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-webserver")),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--workspace", str(workspace)),
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Webserver(url=f"http://127.0.0.1:{port}", process=process, log=log)


def stop_process_tree(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever of the tree is left after `grace`."""
    try:
        tree = [psutil.Process(pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for process in tree[1:]:
        with suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for process in alive:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


# -- the browser ----------------------------------------------------------------------------------


def chromium_binaries() -> tuple[str, str]:
    """Debian's `chromium` and `chromium-driver`; the test fails without them."""
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.fail(
            "Chromium is not installed: run `apt-get install chromium chromium-driver` "
            "(CI installs it)"
        )
    return chromium, chromedriver


def start_chromium(profile: Path, log: Path) -> WebDriver:
    chromium, chromedriver = chromium_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # With the driver's path given, Selenium does not look for (or download) one.
    service = Service(executable_path=chromedriver, log_output=str(log))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(UI_TIMEOUT * 2)
    return driver


def stop_chromium(driver: WebDriver) -> None:
    process = driver.service.process
    pid = process.pid if process is not None else None
    tree: list[psutil.Process] = []
    if pid is not None:
        with suppress(psutil.Error):
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    with suppress(WebDriverException, OSError):
        driver.quit()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for leftover in alive:
        with suppress(psutil.Error):
            leftover.kill()


@contextmanager
def evidence_on_failure(driver: WebDriver, directory: Path, name: str) -> Iterator[None]:
    """On any failure inside, keep a screenshot and the page source next to the test."""
    try:
        yield
    except BaseException as error:
        directory.mkdir(parents=True, exist_ok=True)
        screenshot, source = directory / f"{name}.png", directory / f"{name}.html"
        with suppress(WebDriverException, OSError):
            driver.save_screenshot(str(screenshot))
            source.write_text(driver.page_source)
        error.add_note(f"page {driver.current_url}: screenshot {screenshot}, source {source}")
        raise


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], T], what: Callable[[], str]
) -> T:
    """Wait for a truthy `condition`; on timeout fail with `what()` (what the page showed)."""
    try:
        return WebDriverWait(driver, UI_TIMEOUT, poll_frequency=0.5).until(condition)
    except TimeoutException:
        pass
    pytest.fail(f"after {UI_TIMEOUT:.0f} s: {what()}")


def _texts(driver: WebDriver, selector: str) -> list[str]:
    texts = []
    for element in driver.find_elements(By.CSS_SELECTOR, selector):
        with suppress(WebDriverException):
            if element.is_displayed():
                texts.append(element.text.strip())
    return texts


def asset_node_labels(driver: WebDriver) -> set[str]:
    """The names on the asset nodes of the lineage graph that is on screen."""
    return set(_texts(driver, "[class*='AssetNode_assetName'] [data-tooltip]"))


def listed_check_names(driver: WebDriver) -> set[str]:
    """The check names in the list of an asset's Checks tab (name, then status, per row)."""
    rows = _texts(driver, "[class*='AssetChecks_checkRow']")
    return {row.splitlines()[0] for row in rows if row}


def wait_until_settled(driver: WebDriver, timeout: float = 20.0) -> bytes:
    """Wait until two screenshots a second apart are equal (layout and data have landed)."""
    deadline = time.monotonic() + timeout
    shot = driver.get_screenshot_as_png()
    while time.monotonic() < deadline:
        time.sleep(1)
        previous, shot = shot, driver.get_screenshot_as_png()
        if shot == previous:
            break
    return shot
