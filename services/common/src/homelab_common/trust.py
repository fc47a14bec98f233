"""Who may use the provisioning services' management calls: boot decisions (they carry seed URLs), arming an
install window, reinstall and Wake-on-LAN — the same rule in autoinstall and pxe.

By default only this host itself: pxe runs beside autoinstall (same host or network namespace) and `task up` on the
controller, while any other device on the LAN could otherwise arm a machine and read its seed URL. ``is_local``
decides "this host" by trying to bind the address: only the host's own addresses can be bound. A LAN host cannot
pass as one of them: Linux drops packets arriving from outside with a local source address (martian source, unless
``accept_local``), so a spoofed TCP handshake never completes. Extra trusted networks (a pod network) must never
include the LAN, whose addresses anyone on it can take.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network


def is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def is_trusted(remote: str | None, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if any(ip in net for net in networks):
        return True
    return is_local(remote)
