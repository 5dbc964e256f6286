"""A private CA made with the `openssl` CLI, and an influxd that serves HTTPS with its certificate."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from data_platform.utils.local_servers import (
    INFLUXD_CONFIG,
    LocalInfluxd,
    free_port,
    influxd_binary,
)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """PEM of the CA that signed the server's certificate (what `influx.ca_cert` names)."""
    certificate: Path
    private_key: Path


def make_certificates(folder: Path, name: str = "test") -> Certificates:
    """A CA and a server certificate for 127.0.0.1 and localhost, valid for two days."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    make_ca = ["req", "-x509", *ec, "-days", "2", "-subj", f"/CN={name} CA"]
    make_ca += ["-addext", "basicConstraints=critical,CA:TRUE"]
    make_ca += ["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca_key, "-out", ca]
    request = ["req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr]
    sign = ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
    sign += ["-days", "2", "-extfile", extensions, "-out", cert]
    for command in (make_ca, request, sign):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True, timeout=30)
    return Certificates(ca, cert, key)


class TlsInfluxd(LocalInfluxd):
    """A `LocalInfluxd` whose HTTP API is HTTPS only (`https-enabled` in its `[http]` section)."""

    def __init__(self, root: Path, certificates: Certificates) -> None:
        super().__init__(root=root, http_port=free_port(), rpc_port=free_port())
        self.certificates = certificates

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def start(self, timeout: float = 20.0) -> TlsInfluxd:
        binary = influxd_binary()
        assert binary is not None, "influxd is not installed"
        self.root.mkdir(parents=True, exist_ok=True)
        config = INFLUXD_CONFIG.format(
            root=self.root,
            rpc_port=self.rpc_port,
            http_port=self.http_port,
            auth_enabled="false",
            query_timeout="0s",
        ).replace(
            "  flux-enabled = false\n",
            "  flux-enabled = false\n  https-enabled = true\n"
            f'  https-certificate = "{self.certificates.certificate}"\n'
            f'  https-private-key = "{self.certificates.private_key}"\n',
        )
        (self.root / "influxdb.conf").write_text(config)
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [binary, "-config", str(self.root / "influxdb.conf")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"influxd exited; see {self.root}/influxd.log"
            try:
                with urllib.request.urlopen(
                    f"{self.url}/ping", timeout=1, context=self._context()
                ) as response:
                    if response.status == 204:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"influxd did not answer HTTPS /ping within {timeout}s")

    def _post(
        self,
        path: str,
        params: dict[str, str],
        body: bytes | None = None,
        auth: tuple[str, str] | None = None,
    ) -> bytes:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(
            f"{self.url}{path}?{query}", data=body or b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=60, context=self._context()) as response:
            return response.read()
