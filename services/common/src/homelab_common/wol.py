"""Wake-on-LAN: the magic packet (6 x 0xFF then the MAC 16 times) sent by UDP to a broadcast address.

Shared because two services wake machines: pxe (its API and CLI) and autoinstall (its ``.../wake`` endpoint).
"""

from __future__ import annotations

import re
import socket

_SEPARATORS = re.compile(r"[:\-.]")
_HEX12 = re.compile(r"^[0-9a-fA-F]{12}$")


def mac_bytes(mac: str) -> bytes:
    """``52:54:00:12:34:56``, ``52-54-00-12-34-56``, ``5254.0012.3456`` or bare hex → 6 bytes; else ValueError."""
    digits = _SEPARATORS.sub("", mac.strip())
    if not _HEX12.match(digits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes.fromhex(digits)


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + mac_bytes(mac) * 16


def wake_on_lan(mac: str, broadcast: str = "255.255.255.255", port: int = 9) -> bytes:
    """Send the magic packet for ``mac`` to ``broadcast:port`` (a LAN's directed broadcast); return the packet."""
    packet = magic_packet(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(packet, (broadcast, port))
    return packet
