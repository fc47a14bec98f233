"""What answers the machines' network boot in the lab's boot-server namespace.

:class:`HomelabBootServer` is the product: our ``homelab-autoinstall`` and ``homelab-pxe`` console scripts,
configured only through their environment variables, exactly as ``task up`` runs them on the controller.
:class:`DnsmasqProxy` is dnsmasq's proxyDHCP + TFTP (the anchor project's stack) pointing iPXE at a boot script
URL; the benchmark runs it against ours on the same machines.
"""

from __future__ import annotations

import ipaddress
import shutil
import sys
import time
from pathlib import Path

from homelab_bootstrap.lab.commands import LabError, LabProcess, netns_exec
from homelab_bootstrap.lab.dnsmasq import proxy_pxe_args, start_dnsmasq
from homelab_bootstrap.lab.netns import http

IPXE_DIR = Path("/usr/lib/ipxe")
AUTOINSTALL_PORT = 8081
PXE_PORT = 8080


#: The iPXE binaries PXE firmware fetches over TFTP (Debian's ``ipxe`` package).
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


def prepare_tftp_root(target: Path, source: Path = IPXE_DIR) -> Path:
    """Copy the iPXE binaries into ``target`` as regular files.

    Debian's ``/usr/lib/ipxe/ipxe.efi`` is a symlink to ``/boot/ipxe.efi``; a TFTP server that refuses symlinks
    leaving its root (pxe does, rightly) would refuse it, so the lab serves real copies.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name in IPXE_BINARIES:
        binary = source / name
        if not binary.exists():
            raise LabError(f"{binary} not found: install the Debian package ipxe")
        shutil.copyfile(binary.resolve(), target / name)
    return target


def console_script(name: str) -> str:
    """The path of a workspace console script: beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} not found: run `./task deps` (uv sync --all-packages) so the services are installed")
    return found


def wait_ready(namespace: str, url: str, process: LabProcess, timeout: float = 60.0) -> None:
    """Poll ``url`` from inside ``namespace`` until it answers 200; LabError with the log if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            reply = http(namespace, "GET", url, timeout=2)
            if reply.status == 200:
                return
            last = f"HTTP {reply.status}: {reply.text()[:200]}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise LabError(f"{process.name} not ready at {url} within {timeout:.0f}s ({last}); log: {process.log_path}")


class HomelabBootServer:
    """Our autoinstall + pxe services in the boot-server namespace."""

    def __init__(
        self,
        namespace: str,
        address: ipaddress.IPv4Address,
        subnet: ipaddress.IPv4Network,
        site_file: Path,
        workdir: Path,
        assets_dir: Path,
        *,
        tftp_root: Path = IPXE_DIR,
        dhcp: bool = True,
        tftp: bool = True,
        unknown_action: str = "ignore",
    ) -> None:
        self.namespace = namespace
        self.address = address
        self.workdir = workdir
        self.autoinstall_url = f"http://{address}:{AUTOINSTALL_PORT}"
        self.pxe_url = f"http://{address}:{PXE_PORT}"
        common = {"HOMELAB_SECRETS_DIR": str(workdir / "no-secrets"), "HOMELAB_LOG_LEVEL": "INFO"}
        self.autoinstall_env = {
            **common,
            "HOMELAB_HTTP_BIND": f"0.0.0.0:{AUTOINSTALL_PORT}",
            "HOMELAB_AUTOINSTALL_SITE_FILE": str(site_file),
            "HOMELAB_AUTOINSTALL_STATE_DIR": str(workdir / "autoinstall-state"),
            "HOMELAB_AUTOINSTALL_PUBLIC_URL": self.autoinstall_url,
        }
        self.pxe_env = {
            **common,
            "HOMELAB_HTTP_BIND": f"0.0.0.0:{PXE_PORT}",
            "HOMELAB_PXE_INTERFACE": "eth0",
            "HOMELAB_PXE_SERVER_IP": str(address),
            "HOMELAB_PXE_LAN": str(subnet),
            "HOMELAB_PXE_HTTP_PORT": str(PXE_PORT),
            "HOMELAB_PXE_AUTOINSTALL_URL": f"http://127.0.0.1:{AUTOINSTALL_PORT}",
            "HOMELAB_PXE_ASSETS_DIR": str(assets_dir),
            "HOMELAB_PXE_TFTP_ROOT": str(tftp_root),
            "HOMELAB_PXE_KERNEL_ARGS": "console=ttyS0",
            "HOMELAB_PXE_UNKNOWN_ACTION": unknown_action,
            "HOMELAB_PXE_DHCP_ENABLED": str(dhcp).lower(),
            "HOMELAB_PXE_TFTP_ENABLED": str(tftp).lower(),
        }
        self.autoinstall: LabProcess | None = None
        self.pxe: LabProcess | None = None

    def start(self) -> None:
        (self.workdir / "autoinstall-state").mkdir(parents=True, exist_ok=True)
        self.autoinstall = LabProcess(
            "homelab-autoinstall",
            netns_exec(self.namespace, [console_script("homelab-autoinstall")]),
            self.workdir / "autoinstall.log",
            env=self.autoinstall_env,
            hint="see its log; the site file or a HOMELAB_AUTOINSTALL_* setting may be invalid",
        )
        wait_ready(self.namespace, f"{self.autoinstall_url}/readyz", self.autoinstall)
        self.pxe = LabProcess(
            "homelab-pxe",
            netns_exec(self.namespace, [console_script("homelab-pxe")]),
            self.workdir / "pxe.log",
            env=self.pxe_env,
            hint="see its log; ports 67/69/4011 must be free in the boot-server namespace",
        )
        wait_ready(self.namespace, f"{self.pxe_url}/readyz", self.pxe)

    def stop(self) -> None:
        for process in (self.pxe, self.autoinstall):
            if process is not None:
                process.stop()


class DnsmasqProxy:
    """dnsmasq's proxyDHCP + TFTP; iPXE clients are sent to ``script_url`` (``${mac}`` etc. expanded by iPXE)."""

    def __init__(
        self, namespace: str, subnet: ipaddress.IPv4Network, workdir: Path, script_url: str, tftp_root: Path = IPXE_DIR
    ) -> None:
        self.namespace = namespace
        self.args = proxy_pxe_args(workdir, subnet, tftp_root, script_url)
        self.log = workdir / "dnsmasq-proxy.log"
        self.process: LabProcess | None = None

    def start(self) -> None:
        self.process = start_dnsmasq(self.namespace, self.args, self.log, "dnsmasq proxyDHCP")
        deadline = time.monotonic() + 10
        while "started, version" not in self.process.output():
            self.process.check_alive()
            if time.monotonic() > deadline:
                raise LabError(f"dnsmasq proxyDHCP did not start within 10s; log: {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
