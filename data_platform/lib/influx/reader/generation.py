"""Which InfluxDB answers, and what its v1 `/query` API can do (see GENERATIONS.md).

The reader asks `/ping` once (or takes `influx.version` as given) and from then on sends only
what that generation supports, in the encodings it uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Version = Literal["auto", "1", "2", "3"]
MsgpackLayout = Literal["maps", "arrays"]

_MAJOR_MINOR = re.compile(r"^v?(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Generation:
    """One InfluxDB generation as its v1 `/query` API answers."""

    major: int
    version: str
    """What the server reported (`unknown` when `influx.version` forced the generation)."""
    build: str | None = None
    minor: int | None = None

    @property
    def lists_series(self) -> bool:
        """`SHOW SERIES` exists (1.x, 2.x); InfluxDB 3's InfluxQL has no such statement."""
        return self.major < 3

    @property
    def msgpack(self) -> MsgpackLayout | None:
        """How msgpack comes back: maps (1.x/2.x), arrays (3.7+), or not at all (3.0-3.6,
        or a 3.x whose minor version is unknown)."""
        if self.major < 3:
            return "maps"
        if self.minor is not None and self.minor >= 7:
            return "arrays"
        return None

    @property
    def token_scheme(self) -> str:
        """The `Authorization` scheme of an API token: 2.x refuses `Bearer`, 3.x takes it."""
        return "Bearer" if self.major >= 3 else "Token"

    @property
    def empty_body_is_empty_result(self) -> bool:
        """InfluxDB 3 answers a chunked query without rows with a 0-byte body."""
        return self.major >= 3

    @property
    def label(self) -> str:
        build = f" {self.build}" if self.build else ""
        return f"{self.major}.x{build} ({self.version})"


def forced(version: Version) -> Generation | None:
    """The generation `influx.version` names, or None for `auto` (ask `/ping`)."""
    if version == "auto":
        return None
    return Generation(major=int(version), version="unknown")


def from_ping(status: int, headers: Mapping[str, str], body: bytes) -> Generation:
    """The generation a `/ping` answer shows.

    1.x and 2.x answer 204 with `X-Influxdb-Version` (2.x: `v2.7.x` or `2.7.x`, build `OSS`);
    3.x answers 200 with a JSON body (`version`, `revision`) and `X-Influxdb-Build: Core` or
    `Enterprise`.
    """
    build = headers.get("X-Influxdb-Build") or None
    version = headers.get("X-Influxdb-Version") or ""
    if not version and body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            version = str(document.get("version") or "")
    match = _MAJOR_MINOR.match(version)
    if match:
        major = int(match.group(1))
        minor = int(match.group(2)) if match.group(2) is not None else None
    elif build in ("Core", "Enterprise"):
        major, minor = 3, None
    else:
        # A 1.x that does not say its version (old builds, some proxies): the v1 API as is.
        major, minor = 1, None
    if build in ("Core", "Enterprise") and major < 3:
        major = 3
    return Generation(major=major, version=version or "unknown", build=build, minor=minor)
