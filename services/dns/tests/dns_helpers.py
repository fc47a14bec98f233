"""Fixtures: a real BIND9 on loopback with a TSIG-protected zone, and the embedded server on a free port."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from homelab_common.testing import free_port

ZONE = "example.test"
KEY_NAME = "homelab-key"

ZONE_FILE = """\
$TTL 300
@       IN SOA  ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@       IN NS   ns.{zone}.
ns      IN A    127.0.0.1
legacy  IN A    10.9.9.9
taken   IN A    10.9.9.10
"""

CONFIG = """\
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-transfer {{ none; }};
}};
key "{key}" {{ algorithm hmac-sha256; secret "{secret}"; }};
key "reader" {{ algorithm hmac-sha256; secret "{secret}"; }};
controls {{ }};
zone "{zone}" {{
    type primary;
    file "{dir}/{zone}.zone";
    allow-update {{ key "{key}"; }};
    allow-transfer {{ key "{key}"; key "reader"; }};
}};
"""


@dataclass
class Bind:
    directory: Path
    port: int
    secret: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "named.log"

    def start(self) -> None:
        conf = self.directory / "named.conf"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["named", "-g", "-c", str(conf), *(["-u", "root"] if os.geteuid() == 0 else [])],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        query = dns.message.make_query(ZONE, "SOA")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("named exited:\n" + self.log.read_text()[-3000:])
            try:
                response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
                if response.rcode() == dns.rcode.NOERROR and response.answer:
                    return
            except (OSError, dns.exception.Timeout):
                pass
            time.sleep(0.1)
        raise RuntimeError("named did not answer within 30 s:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Bind]:
    if shutil.which("named") is None:
        pytest.skip("named (Debian bind9) is not installed; scripts/ensure-debs.sh bind9")
    directory = tmp_path / "bind"
    directory.mkdir()
    directory.chmod(0o777)  # named may drop to the bind user; it writes its journal here
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    server = Bind(directory, free_port(), secret)
    (directory / "named.conf").write_text(
        CONFIG.format(dir=directory, port=server.port, key=KEY_NAME, secret=secret, zone=ZONE)
    )
    (directory / f"{ZONE}.zone").write_text(ZONE_FILE.format(zone=ZONE))
    for path in directory.iterdir():
        path.chmod(0o666)
    server.start()
    yield server
    server.stop()
