"""The ``homelab-pxe`` console script as the lab starts it: a subprocess configured only by environment variables."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tftpy
from pxe_fakes import FakeAutoinstall
from pxe_pcap import capture

from homelab_common.testing import free_port
from homelab_pxe.dhcp import OFFER, decode

MAC = "52:54:00:12:34:56"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def client() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(15)
        yield sock


@pytest.mark.slow
def test_service_process_serves_dhcp_tftp_and_boot_scripts(tmp_path: Path, client: socket.socket) -> None:
    tftp_root = tmp_path / "tftp"
    tftp_root.mkdir()
    (tftp_root / "ipxe.efi").write_bytes(os.urandom(200_000))
    http_port = free_port()
    ports = {name: free_port() for name in ("DHCP", "PROXY", "TFTP")}
    with FakeAutoinstall() as autoinstall:
        autoinstall.answers[MAC] = {"action": "local", "machine": "node1", "arch": "amd64"}
        env = {
            **os.environ,
            "HOMELAB_SECRETS_DIR": str(tmp_path / "no-secrets"),
            "HOMELAB_HTTP_BIND": f"127.0.0.1:{http_port}",
            "HOMELAB_PXE_INTERFACE": "lo",
            "HOMELAB_PXE_SERVER_IP": "127.0.0.1",
            "HOMELAB_PXE_HTTP_PORT": str(http_port),
            "HOMELAB_PXE_BIND_ADDRESS": "127.0.0.1",
            "HOMELAB_PXE_DHCP_PORT": str(ports["DHCP"]),
            "HOMELAB_PXE_PROXY_PORT": str(ports["PROXY"]),
            "HOMELAB_PXE_TFTP_PORT": str(ports["TFTP"]),
            "HOMELAB_PXE_REPLY_ADDRESS": "127.0.0.1",
            "HOMELAB_PXE_CLIENT_PORT": str(client.getsockname()[1]),
            "HOMELAB_PXE_TFTP_ROOT": str(tftp_root),
            "HOMELAB_PXE_ASSETS_DIR": str(tmp_path),
            "HOMELAB_PXE_AUTOINSTALL_URL": autoinstall.url,
        }
        exe = shutil.which("homelab-pxe", path=str(Path(sys.executable).parent)) or "homelab-pxe"
        process = subprocess.Popen([exe], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{http_port}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    if get(f"{base}/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the service did not become ready"
                time.sleep(0.2)

            client.sendto(capture("ovmf-edk2-pxe-then-ipxe.pcap")[0].payload, ("127.0.0.1", ports["DHCP"]))
            offer = decode(client.recv(2048))
            assert offer.message_type == OFFER
            assert offer.file == b"ipxe.efi"

            out = tmp_path / "got.efi"
            tftpy.TftpClient("127.0.0.1", ports["TFTP"], options={"blksize": 1468, "tsize": 0}).download(
                "ipxe.efi", str(out), timeout=5
            )
            assert out.read_bytes() == (tftp_root / "ipxe.efi").read_bytes()

            status, body = get(f"{base}/boot.ipxe?mac={MAC}&uuid=&arch=x86_64")
            assert status == 200
            assert body.decode().splitlines()[-1] == "exit"

            deadline = time.monotonic() + 20
            while "homelab_pxe_tftp_transfers_total{" not in (metrics := get(f"{base}/metrics")[1].decode()):
                assert time.monotonic() < deadline, "the TFTP transfer was never counted"
                time.sleep(0.1)
            assert 'homelab_pxe_dhcp_replies_total{arch="x86_64-efi",kind="binary"} 1.0' in metrics
            assert 'homelab_pxe_tftp_transfers_total{result="complete"} 1.0' in metrics
            assert 'homelab_pxe_boot_scripts_total{action="local"} 1.0' in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
