"""TimescaleDB for tests: PGlite (PostgreSQL 17 in WASM) served over the PostgreSQL protocol.

`start_timescale_engine()` runs `server.mjs` with Node and returns a `TimescaleEngine` whose `url`
any libpq client can use. All connections share one backend session, so psycopg connections
must not prepare statements: pass `**connect_kwargs()` (`prepare_threshold=None`) to
`psycopg.connect` and to `psycopg_pool` (`kwargs=connect_kwargs()`). README.md lists what else
differs from a real server.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psycopg

ENGINE_DIR = Path(__file__).resolve().parent
SERVER_SCRIPT = ENGINE_DIR / "server.mjs"
PACKAGE_LOCK = ENGINE_DIR / "package-lock.json"
NODE_MODULES = ENGINE_DIR / "node_modules"
# npm writes this file on every install; its age says whether node_modules matches the lock.
INSTALLED_MARKER = NODE_MODULES / ".package-lock.json"

__all__ = [
    "TimescaleEngine",
    "TimescaleEngineError",
    "connect_kwargs",
    "ensure_installed",
    "start_timescale_engine",
]


class TimescaleEngineError(RuntimeError):
    """The engine could not be installed, started or stopped."""


def connect_kwargs() -> dict[str, Any]:
    """Keyword arguments every psycopg connection to the engine needs."""
    # Prepared statements would be shared by all connections and collide by name.
    return {"prepare_threshold": None}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TimescaleEngineError(
            f"`{name}` is not on PATH: the TimescaleDB test engine needs Node.js 20+ and npm "
            "(Debian: `apt-get install nodejs npm`)"
        )
    return path


def ensure_installed() -> None:
    """Install the engine's npm dependencies from the lock when they are missing or stale."""
    node = _tool("node")
    npm = _tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        raise TimescaleEngineError(f"Node.js 20+ is needed, found {version.stdout.strip()}")
    # Parallel test workers may all get here at once: one installs, the others wait.
    digest = hashlib.sha256(str(ENGINE_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"timescale-engine-install-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed():
                return
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=ENGINE_DIR,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise TimescaleEngineError(
                    f"`npm ci` failed in {ENGINE_DIR} (exit {result.returncode}):\n"
                    f"{result.stderr[-4000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _installed() -> bool:
    return (
        INSTALLED_MARKER.exists()
        and INSTALLED_MARKER.stat().st_mtime >= PACKAGE_LOCK.stat().st_mtime
    )


@dataclass
class TimescaleEngine:
    """A running engine: `url` for libpq clients, `stop()` to shut it down cleanly."""

    process: subprocess.Popen[str]
    port: int
    data_dir: Path | None
    _log: collections.deque[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection with the settings the engine needs (`autocommit=...` etc. pass through)."""
        return psycopg.connect(self.url, **{**connect_kwargs(), **kwargs})

    def log_tail(self) -> str:
        """The last lines the server wrote, for error messages."""
        return "\n".join(self._log)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server with SIGTERM so PGlite closes its data directory cleanly."""
        if self.process.poll() is not None:
            if self.process.returncode != 0:
                raise TimescaleEngineError(
                    f"the engine had exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise TimescaleEngineError(
                f"the engine did not stop within {timeout}s and was killed; "
                f"its data directory may be inconsistent:\n{self.log_tail()}"
            ) from None
        finally:
            if self.process.stdin is not None:
                self.process.stdin.close()
        if self.process.returncode != 0:
            raise TimescaleEngineError(
                f"the engine exited with {self.process.returncode} on stop:\n{self.log_tail()}"
            )

    def __enter__(self) -> TimescaleEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_timescale_engine(
    data_dir: Path | None = None, *, port: int = 0, timeout: float = 120.0
) -> TimescaleEngine:
    """Start an engine on 127.0.0.1 (`port=0`: any free port), in memory or in `data_dir`.

    An existing `data_dir` is reopened with its data; a missing or empty one is initialised.
    """
    ensure_installed()
    command = [_tool("node"), str(SERVER_SCRIPT), "--port", str(port), "--stop-on-stdin-eof"]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        command += ["--data-dir", str(data_dir)]
    # stdin stays open for the server's lifetime: if this process dies, the server sees EOF and
    # stops instead of lingering.
    process = subprocess.Popen(
        command,
        cwd=ENGINE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    log: collections.deque[str] = collections.deque(maxlen=200)
    ready = threading.Event()
    found: list[int] = []

    def watch(stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if not found and line.startswith("READY "):
                found.append(int(line.split()[1]))
                ready.set()
            else:
                log.append(line)
        ready.set()

    threading.Thread(target=watch, args=(process.stdout,), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimescaleEngineError(
                f"the engine did not report READY within {timeout}s:\n" + "\n".join(log)
            )
    if not found:
        process.wait()
        raise TimescaleEngineError(
            f"the engine exited with {process.returncode} before listening:\n" + "\n".join(log)
        )
    return TimescaleEngine(process=process, port=found[0], data_dir=data_dir, _log=log)
