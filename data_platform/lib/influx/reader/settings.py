"""Where and how to reach one InfluxDB database, validated once; credentials apart.

`InfluxSettings` holds nothing secret, so it can be logged, compared and kept in definitions.
`Credentials` are read at run time and handed to the client beside it. The checks here are
the only ones: the YAML's `influx` block calls `check_url` and `check_database` at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

import httpx

from data_platform.lib.influx.reader.errors import InfluxSettingsError
from data_platform.lib.influx.reader.generation import Version

Format = Literal["auto", "msgpack", "csv", "json"]
WireFormat = Literal["msgpack", "csv", "json"]

_HTTP_URL = re.compile(r"^https?://[^\s/]+")


def _without_userinfo(url: str) -> str:
    """`url` with anything before an `@` in its authority masked (it may be credentials)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)?[^/@]*@", r"\1***@", url)


def check_url(url: str) -> str:
    """The base URL of the server's HTTP API (stripped, no trailing `/`); never repeats
    credentials found in it."""
    value = url.strip()
    if not _HTTP_URL.match(value):
        raise InfluxSettingsError(
            "influx.url",
            f"{_without_userinfo(value)!r} is not an http(s) URL; write e.g. "
            "'http://localhost:8086' (or set INFLUX_URL when the YAML reads it)",
        )
    if "@" in value.split("//", 1)[1].split("/", 1)[0]:
        raise InfluxSettingsError(
            "influx.url",
            "credentials in the URL are not allowed (they would be logged); "
            "use username_env/password_env or token_env",
        )
    try:
        parsed = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InfluxSettingsError("influx.url", f"invalid URL ({exc})") from None
    if not parsed.host or parsed.query or parsed.fragment:
        shown = str(parsed.copy_with(query=None, fragment=None))
        raise InfluxSettingsError(
            "influx.url",
            f"{shown!r} has no host, or a query string or fragment; write the server's base "
            "URL, e.g. 'https://influx.example.com:8086'",
        )
    return value.rstrip("/")


def check_database(name: str) -> str:
    if not name.strip():
        raise InfluxSettingsError(
            "influx.database",
            "it is empty; name the database or bucket (or set INFLUX_DATABASE when the YAML "
            "reads it)",
        )
    return name


@dataclass(frozen=True)
class InfluxSettings:
    """Where and how to reach one InfluxDB database through the v1 `/query` API."""

    url: str
    database: str
    retention_policy: str | None = None
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    verify_tls: bool = True
    ca_cert: str | None = None
    format: Format = "auto"
    chunk_size: int = 10_000
    version: Version = "auto"
    """The server's generation: `auto` asks `/ping` once; `1`, `2` or `3` forces it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_url(self.url))
        check_database(self.database)
        if self.version not in get_args(Version):
            raise InfluxSettingsError(
                "influx.version",
                f"unknown version {self.version!r}; use one of {', '.join(get_args(Version))}",
            )
        if self.format not in get_args(Format):
            raise InfluxSettingsError(
                "influx.format",
                f"unknown format {self.format!r}; use one of {', '.join(get_args(Format))}",
            )
        if self.chunk_size <= 0 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise InfluxSettingsError(
                "influx.chunk_size", "chunk_size and the timeouts must be positive"
            )


@dataclass(frozen=True, repr=False)
class Credentials:
    """Who reads: a user name and password (basic auth) or a token, never both."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if self.token and (self.username or self.password):
            raise InfluxSettingsError(
                "influx credentials",
                "both a token and a username/password are set; use INFLUX_TOKEN or "
                "INFLUX_USERNAME/INFLUX_PASSWORD, not both",
            )
        if self.password and not self.username:
            raise InfluxSettingsError(
                "influx credentials",
                "a password is set without a username; set INFLUX_USERNAME as well",
            )

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in a message or a log."""
        return tuple(s for s in (self.password, self.token) if s)

    def __repr__(self) -> str:
        password = "'***'" if self.password else "None"
        token = "'***'" if self.token else "None"
        return f"Credentials(username={self.username!r}, password={password}, token={token})"
