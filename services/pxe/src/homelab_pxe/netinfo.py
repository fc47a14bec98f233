"""Which interface and address we serve on, found with pyroute2 (netlink) unless the settings say."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from pyroute2 import IPRoute


class NetworkDetectionError(Exception):
    """The serving interface or address cannot be determined; the message names the settings to set."""


@dataclass(frozen=True)
class Serving:
    interface: str | None
    address: IPv4Interface

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip

    @property
    def network(self) -> IPv4Network:
        return self.address.network

    @property
    def broadcast(self) -> IPv4Address:
        return self.address.network.broadcast_address


def _addresses() -> list[tuple[str, IPv4Interface]]:
    with IPRoute() as ipr:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        return [
            (str(names.get(msg["index"], msg["index"])), IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"))
            for msg in ipr.get_addr(family=socket.AF_INET)
        ]


def _default_interface() -> str | None:
    with IPRoute() as ipr:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_default_routes(family=socket.AF_INET):
            oif = route.get("RTA_OIF")
            if oif in names:
                return str(names[oif])
    return None


def detect(
    interface: str | None = None, server_ip: IPv4Address | None = None, lan: IPv4Network | None = None
) -> Serving:
    """The serving interface and address: as configured, else the one on ``lan``, else the default route's."""
    addresses = _addresses()
    candidates = addresses
    if interface is not None:
        candidates = [(name, addr) for name, addr in addresses if name == interface]
        if not candidates:
            raise NetworkDetectionError(f"HOMELAB_PXE_INTERFACE={interface}: no IPv4 address on that interface")
    if server_ip is not None:
        matching = [(name, addr) for name, addr in candidates if addr.ip == server_ip]
        if not matching:
            if interface is None:
                raise NetworkDetectionError(f"HOMELAB_PXE_SERVER_IP={server_ip}: no interface has this address")
            raise NetworkDetectionError(f"HOMELAB_PXE_SERVER_IP={server_ip}: not an address of {interface}")
        return Serving(matching[0][0], matching[0][1])
    if lan is not None:
        matching = [(name, addr) for name, addr in candidates if addr.ip in lan]
        if not matching:
            raise NetworkDetectionError(
                f"HOMELAB_PXE_LAN={lan}: no interface has an address in it; set HOMELAB_PXE_INTERFACE/SERVER_IP"
            )
        return Serving(*matching[0])
    if interface is not None:
        return Serving(*candidates[0])
    default = _default_interface()
    matching = [(name, addr) for name, addr in addresses if name == default]
    if not matching:
        raise NetworkDetectionError(
            "no default route to pick the serving interface; set HOMELAB_PXE_LAN, HOMELAB_PXE_INTERFACE "
            "or HOMELAB_PXE_SERVER_IP"
        )
    return Serving(*matching[0])
