"""dnsmasq in the lab: the home router (DHCP + router advertisements, no PXE) and the proxyDHCP baseline.

The router deliberately knows nothing about PXE, like a real home router: network boot must come from our pxe
service's proxyDHCP beside it. :func:`proxy_pxe_args` is dnsmasq's own proxyDHCP + TFTP (the stack of the anchor
project), used by the benchmark as the same-run baseline.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from homelab_bootstrap.lab.commands import LabProcess, netns_exec, require_tool


def _common(workdir: Path, name: str) -> list[str]:
    return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-", "--user=root",
            "--group=root", f"--pid-file={workdir / (name + '.pid')}", "--port=0", "--interface=eth0",
            "--bind-interfaces", "--log-dhcp"]  # fmt: skip


def router_args(
    workdir: Path,
    subnet: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
    dns: list[ipaddress.IPv4Address],
    ipv6_prefix: ipaddress.IPv6Network,
    reservations: dict[str, ipaddress.IPv4Address] | None = None,
) -> list[str]:
    """A home router: DHCP from the upper half of the subnet (site addresses reserved per MAC), RAs on, no PXE."""
    hosts = list(subnet.hosts())
    first, last = hosts[len(hosts) // 2], hosts[-2]
    args = [*_common(workdir, "router"),
            f"--dhcp-range={first},{last},{subnet.netmask},1h",
            f"--dhcp-option=option:router,{gateway}",
            "--dhcp-option=option:dns-server," + ",".join(str(d) for d in dns),
            f"--dhcp-leasefile={workdir / 'router.leases'}",
            "--dhcp-authoritative",
            "--enable-ra", f"--dhcp-range={ipv6_prefix.network_address},ra-only"]  # fmt: skip
    for mac, address in (reservations or {}).items():
        args.append(f"--dhcp-host={mac},{address}")
    return args


def proxy_pxe_args(workdir: Path, subnet: ipaddress.IPv4Network, tftp_root: Path, script_url: str) -> list[str]:
    """dnsmasq as proxyDHCP + TFTP: firmware gets the iPXE binary, iPXE (user class ``iPXE``) gets ``script_url``."""
    net = subnet.network_address
    return [*_common(workdir, "proxy"),
            f"--dhcp-range={net},proxy,{subnet.netmask}",
            "--dhcp-userclass=set:ipxe,iPXE",
            "--pxe-prompt=booting,0",
            "--pxe-service=tag:!ipxe,x86PC,iPXE,undionly.kpxe",
            "--pxe-service=tag:!ipxe,x86-64_EFI,iPXE,ipxe.efi",
            "--pxe-service=tag:!ipxe,BC_EFI,iPXE,ipxe.efi",
            f"--pxe-service=tag:ipxe,x86PC,script,{script_url}",
            f"--pxe-service=tag:ipxe,x86-64_EFI,script,{script_url}",
            f"--pxe-service=tag:ipxe,BC_EFI,script,{script_url}",
            "--enable-tftp", f"--tftp-root={tftp_root}"]  # fmt: skip


def start_dnsmasq(namespace: str, args: list[str], log: Path, name: str) -> LabProcess:
    """Start dnsmasq in ``namespace``; check it is still up with ``check_alive()`` once it had a moment."""
    require_tool("dnsmasq", "dnsmasq")
    return LabProcess(name, netns_exec(namespace, args), log, hint="is port 67 free in the namespace? see the log")
