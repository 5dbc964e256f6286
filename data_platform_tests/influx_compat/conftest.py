"""The compatibility proxy as a fixture: it fails the test when the reader sent a statement
the profile's generation refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.influx_compat.proxy import CompatProxy, Profile


@pytest.fixture
def compat_proxy(influxd: LocalInfluxd) -> Iterator[Callable[[Profile], CompatProxy]]:
    started: list[CompatProxy] = []

    def start(profile: Profile) -> CompatProxy:
        started.append(CompatProxy(influxd.url, profile))
        return started[-1]

    yield start
    for proxy in started:
        proxy.close()
    refused = [s for proxy in started for s in proxy.refused]
    assert not refused, f"the reader sent statements the generation refuses: {refused}"
