"""The Dagster UI of the project as a person sees it: a real webserver on a copy of the project,
looked at in headless Chromium.

What must show is derived from the project's `defs.yaml` files and `dg list defs`, so a new
sample source is covered without touching this file. `UPDATE_SCREENSHOTS=1` also rewrites
`docs/ui-asset-graph.png` (the README's picture) from the first group's lineage graph.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from data_platform_tests.project_copy import PROJECT_ROOT, copy_project, list_defs
from data_platform_tests.ui.dagster_ui import (
    ExpectedAsset,
    Webserver,
    asset_node_labels,
    chromium_binaries,
    evidence_on_failure,
    expected_assets,
    group_path,
    listed_check_names,
    start_chromium,
    start_webserver,
    stop_chromium,
    wait_until,
    wait_until_settled,
)

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "docs" / "ui-asset-graph.png"


@dataclass
class ProjectUI:
    server: Webserver
    repository: str
    location: str
    assets: list[ExpectedAsset]

    @property
    def groups(self) -> list[str]:
        """Groups in the order of their `defs.yaml` files."""
        return list(dict.fromkeys(asset.group for asset in self.assets))

    def url(self, path: str) -> str:
        return self.server.url + path


@pytest.fixture(scope="module")
def project_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectUI]:
    """The webserver on a copy of the project, its code location loaded, and the assets that
    `dg list defs` reports for the copy's `defs.yaml` files."""
    chromium_binaries()  # no Chromium: fail before paying for the server
    root = tmp_path_factory.mktemp("ui")
    project = copy_project(root / "data_platform")
    server = start_webserver(project, root / "dagster_home", root / "webserver.log")
    try:
        # `dg list defs` loads the definitions in its own process while the server starts.
        with ThreadPoolExecutor(max_workers=1) as pool:
            listing = pool.submit(list_defs, project)
            repository, location = server.wait_for_code_location()
            assets = expected_assets(project, listing.result())
        assert assets, "no asset comes from a defs.yaml under data_platform/defs/"
        yield ProjectUI(server, repository, location, assets)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    root = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(root / "profile", root / "chromedriver.log")
    try:
        yield driver
    finally:
        stop_chromium(driver)


def open_group_graph(browser: WebDriver, url: str, group: str, expected: set[str]) -> None:
    browser.get(url)
    wait_until(
        browser,
        lambda driver: expected <= asset_node_labels(driver),
        lambda: (
            f"group {group}: the lineage graph shows {sorted(asset_node_labels(browser))}, "
            f"expected {sorted(expected)}"
        ),
    )


def open_checks_tab(browser: WebDriver, url: str, asset: ExpectedAsset) -> None:
    browser.get(url)
    wait_until(
        browser,
        lambda driver: listed_check_names(driver) == asset.checks,
        lambda: (
            f"{asset.key}: the Checks tab lists {sorted(listed_check_names(browser))}, "
            f"expected {sorted(asset.checks)}"
        ),
    )


def test_lineage_graph_shows_each_groups_assets(
    project_ui: ProjectUI, browser: WebDriver, tmp_path: Path
):
    for group in project_ui.groups:
        url = project_ui.url(group_path(project_ui.repository, project_ui.location, group))
        expected = {asset.label for asset in project_ui.assets if asset.group == group}
        with evidence_on_failure(browser, tmp_path, f"group-{group}"):
            open_group_graph(browser, url, group, expected)
            if group == project_ui.groups[0] and os.environ.get("UPDATE_SCREENSHOTS") == "1":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                SCREENSHOT.write_bytes(wait_until_settled(browser))


def test_checks_tab_lists_each_assets_checks(
    project_ui: ProjectUI, browser: WebDriver, tmp_path: Path
):
    checked = [asset for asset in project_ui.assets if asset.checks]
    assert checked, "no asset from a defs.yaml has asset checks"
    for asset in checked:
        with evidence_on_failure(browser, tmp_path, "checks-" + asset.key.replace("/", "__")):
            open_checks_tab(browser, project_ui.url(asset.checks_path), asset)
