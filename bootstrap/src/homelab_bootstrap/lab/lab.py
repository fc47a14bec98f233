"""The virtual lab: the site's machines as QEMU VMs on a private LAN with a home router, from the site file.

``task up``'s virtual-lab mode and the end-to-end tests both use :class:`VirtualLab`: it builds the LAN
(:mod:`.network`), runs dnsmasq as the home router (DHCP and router advertisements only — network boot is the
boot server's job), puts the installer in place as pxe's assets — through the real assets stage, from the lab's
own signed stand-in release (:mod:`.release`) unless the caller did already — and creates one
:class:`~.qemu.VirtualMachine` per site machine. What answers the boot (our services or the dnsmasq baseline) is
started by the caller through :meth:`VirtualLab.start_homelab` or :meth:`VirtualLab.start_dnsmasq_proxy`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from homelab_bootstrap.lab.bootserver import PXE_PORT, DnsmasqProxy, HomelabBootServer, prepare_tftp_root
from homelab_bootstrap.lab.commands import LabError, LabProcess
from homelab_bootstrap.lab.dnsmasq import router_args, start_dnsmasq
from homelab_bootstrap.lab.netns import HttpReply, http
from homelab_bootstrap.lab.network import LabNetwork, sweep_stale
from homelab_bootstrap.lab.qemu import Firmware, MachineSpec, VirtualMachine
from homelab_bootstrap.lab.release import prepare_assets
from homelab_common.site import INITRD_ASSET, ISO_ASSET, KERNEL_ASSET

ASSETS = (KERNEL_ASSET, INITRD_ASSET, ISO_ASSET)


class LanLike(Protocol):
    """What the lab needs of the site's ``lan`` (``homelab_common.site.Lan``)."""

    @property
    def subnet(self) -> ipaddress.IPv4Network: ...
    @property
    def gateway(self) -> ipaddress.IPv4Address: ...
    @property
    def dns(self) -> Sequence[ipaddress.IPv4Address]: ...


class MachineLike(Protocol):
    """What the lab needs of a site machine (``homelab_common.site.Machine``)."""

    @property
    def name(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def ip(self) -> ipaddress.IPv4Address: ...
    @property
    def arch(self) -> str: ...


class SiteLike(Protocol):
    """What the lab needs of the site (``homelab_common.site.Site``)."""

    @property
    def lan(self) -> LanLike: ...
    @property
    def machines(self) -> Sequence[MachineLike]: ...


def machine_specs(
    site: SiteLike, firmware: Firmware | Mapping[str, Firmware] = Firmware.BIOS_IPXE, memory_mb: int = 384
) -> list[MachineSpec]:
    """One VM definition per site machine (amd64 only: the lab emulates x86-64)."""
    specs = []
    for machine in site.machines:
        if machine.arch != "amd64":
            raise LabError(f"machine {machine.name}: arch {machine.arch} cannot run in the virtual lab (amd64 only)")
        chosen = firmware if isinstance(firmware, Firmware) else firmware.get(machine.name, Firmware.BIOS_IPXE)
        specs.append(MachineSpec(machine.name, machine.mac, chosen, memory_mb))
    return specs


def pick_bootserver_ip(site: SiteLike) -> ipaddress.IPv4Address:
    """The first address of the LAN that is neither the gateway, a DNS server nor a machine's."""
    taken = {site.lan.gateway, *site.lan.dns, *(m.ip for m in site.machines)}
    for address in site.lan.subnet.hosts():
        if address not in taken:
            return address
    raise LabError(f"lan.subnet {site.lan.subnet} has no free address for the boot server")


class VirtualLab:
    """The lab for one site; a context manager that always tears everything down."""

    def __init__(
        self,
        site: SiteLike,
        site_file: Path,
        workdir: Path,
        cache_dir: Path,
        firmware: Firmware | Mapping[str, Firmware] = Firmware.BIOS_IPXE,
        memory_mb: int = 384,
        assets_dir: Path | None = None,
    ) -> None:
        self.site = site
        # absolute: the paths go to dnsmasq (which changes directory at start), QEMU and the services
        self.site_file = site_file.resolve()
        self.workdir = workdir.resolve()
        self.cache_dir = cache_dir.resolve()
        #: Given: installer assets the caller put in place (`task up`'s assets stage); None: the lab makes its own
        self.given_assets = assets_dir.resolve() if assets_dir is not None else None
        self.specs = {spec.name: spec for spec in machine_specs(site, firmware, memory_mb)}
        self.bootserver_ip = pick_bootserver_ip(site)
        self.network = LabNetwork(site.lan.subnet, site.lan.gateway, self.bootserver_ip)
        self.assets_dir = self.given_assets or self.workdir / "assets"
        self.tftp_root = self.workdir / "tftp"
        self.router: LabProcess | None = None
        self.boot_servers: list[HomelabBootServer | DnsmasqProxy] = []
        self.homelab: HomelabBootServer | None = None
        self.machines: dict[str, VirtualMachine] = {}

    def start(self) -> VirtualLab:
        """Sweep leftovers of dead runs, build the LAN, start the router, build the installer."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        sweep_stale()
        self.network.create()
        try:
            if self.given_assets is None:
                prepare_assets(self.cache_dir, self.assets_dir, say=lambda _line: None)
            elif not all((self.assets_dir / "amd64" / name).is_file() for name in ASSETS):
                raise LabError(f"no installer assets in {self.assets_dir}/amd64: run the assets stage first")
            prepare_tftp_root(self.tftp_root)
            lan = self.site.lan
            args = router_args(self.workdir, lan.subnet, lan.gateway, list(lan.dns), self.network.ipv6_prefix)
            self.router = start_dnsmasq(self.network.router_ns, args, self.workdir / "router.log", "router dnsmasq")
            deadline = time.monotonic() + 10
            while "started, version" not in self.router.output():
                self.router.check_alive()
                if time.monotonic() > deadline:
                    raise LabError(f"router dnsmasq did not start within 10s; log: {self.router.log_path}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def start_homelab(self, **options: Any) -> HomelabBootServer:
        """Our pxe + autoinstall on the boot server (options: dhcp, tftp, unknown_action)."""
        server = HomelabBootServer(
            self.network.boot_ns, self.bootserver_ip, self.site.lan.subnet, self.site_file,
            self.workdir / "bootserver", self.assets_dir, tftp_root=self.tftp_root, **options,
        )  # fmt: skip
        self.homelab = server
        self.boot_servers.append(server)
        server.start()
        return server

    def start_dnsmasq_proxy(self, script_url: str | None = None) -> DnsmasqProxy:
        """dnsmasq's proxyDHCP + TFTP; iPXE goes to ``script_url`` (default: our pxe's boot script URL)."""
        url = (
            script_url
            or f"http://{self.bootserver_ip}:{PXE_PORT}/boot.ipxe?mac=${{mac}}&uuid=${{uuid}}&arch=${{buildarch}}"
        )
        proxy = DnsmasqProxy(self.network.boot_ns, self.site.lan.subnet, self.workdir, url, self.tftp_root)
        self.boot_servers.append(proxy)
        proxy.start()
        return proxy

    def machine(self, name: str) -> VirtualMachine:
        """The VM of site machine ``name`` (created on first use: disk, NVRAM, tap)."""
        if name not in self.machines:
            if name not in self.specs:
                raise LabError(f"no machine {name!r} in the site file (known: {', '.join(self.specs)})")
            self.machines[name] = VirtualMachine(self.specs[name], self.network, self.workdir / "machines")
        return self.machines[name]

    def add_machine(self, spec: MachineSpec) -> VirtualMachine:
        """A VM that is not in the site file (a stranger on the LAN)."""
        if spec.name in self.machines or spec.name in self.specs:
            raise LabError(f"machine {spec.name} exists already")
        self.machines[spec.name] = VirtualMachine(spec, self.network, self.workdir / "machines")
        return self.machines[spec.name]

    def arm(self, name: str) -> None:
        """Open ``name``'s install window in autoinstall, as `task up` does just before waking a machine."""
        mac = self.machine(name).spec.mac
        reply = self.autoinstall("POST", f"/api/v1/machines/{mac}/arm")
        if reply.status != 200:
            raise LabError(f"autoinstall refused to arm {name} ({mac}): HTTP {reply.status} {reply.text()[:200]}")

    def provision(
        self, names: Sequence[str] | None = None, timeout: float = 900.0, progress: Callable[[str], None] | None = None
    ) -> None:
        """Power machines on (default: every site machine) and wait until autoinstall reports each installed.

        This is the virtual lab's metal stage: each machine's install window is armed, then the machines PXE-boot
        from our services exactly as hardware would.
        A machine that powers off without being installed (the installer printed FAILED, or gave up) is an error
        naming it, with its serial console's last lines.
        """
        if self.homelab is None:
            raise LabError("the homelab boot server is not running: call start_homelab() first")
        pending = {name: self.machine(name) for name in (names or list(self.specs))}
        for name, vm in pending.items():
            self.arm(name)
            vm.start()
            if progress:
                progress(f"{vm.spec.name}: powered on ({vm.spec.firmware.value})")
        deadline = time.monotonic() + timeout
        while pending:
            for name, vm in list(pending.items()):
                reply = self.autoinstall("GET", f"/api/v1/machines/{vm.spec.mac}")
                if reply.status != 200:
                    raise LabError(f"autoinstall does not know {name} ({vm.spec.mac}): HTTP {reply.status}")
                if reply.json()["state"] == "installed":
                    del pending[name]
                    if progress:
                        progress(f"{name}: installed")
                elif vm.process is not None and not vm.process.alive():
                    raise LabError(f"{name} powered off but is not installed; serial ({vm.serial_log}):\n"
                                   f"{vm.serial()[-2000:]}")  # fmt: skip
            if pending and time.monotonic() > deadline:
                raise LabError(f"not installed within {timeout:.0f}s: {', '.join(pending)}")
            time.sleep(1.0)

    def autoinstall(self, method: str, path: str, body: bytes | None = None) -> HttpReply:
        """Ask our autoinstall service (from inside the boot-server namespace)."""
        if self.homelab is None:
            raise LabError("the homelab boot server is not running: call start_homelab() first")
        return http(self.network.boot_ns, method, self.homelab.autoinstall_url + path, body)

    def pxe(self, method: str, path: str) -> HttpReply:
        """Ask our pxe service's HTTP side (from inside the boot-server namespace)."""
        if self.homelab is None:
            raise LabError("the homelab boot server is not running: call start_homelab() first")
        return http(self.network.boot_ns, method, self.homelab.pxe_url + path)

    def stop_boot_servers(self) -> None:
        """Stop whatever answers network boots (to start another stack on the same LAN)."""
        for server in reversed(self.boot_servers):
            server.stop()
        self.boot_servers.clear()
        self.homelab = None

    def stop(self) -> None:
        """Stop every machine and service and delete the LAN; safe to call twice."""
        for vm in self.machines.values():
            vm.stop()
        self.stop_boot_servers()
        if self.router is not None:
            self.router.stop()
        self.network.destroy()

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
