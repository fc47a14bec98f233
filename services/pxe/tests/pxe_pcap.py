"""A tiny reader for the classic pcap format (Ethernet + IPv4 + UDP), enough for the reference captures."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "pcap"
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Datagram:
    index: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes

    def __str__(self) -> str:
        return f"#{self.index} {self.src}:{self.sport}->{self.dst}:{self.dport}"


def reference_dir() -> Path:
    """The captures: ``$HOMELAB_REFERENCE_DIR/pcap``, or the copies vendored in fixtures/pcap."""
    import os

    override = os.environ.get("HOMELAB_REFERENCE_DIR")
    return Path(override) / "pcap" if override else REFERENCE


def read_udp(path: Path) -> list[Datagram]:
    data = path.read_bytes()
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = _GLOBAL.unpack_from(data)
    if magic != 0xA1B2C3D4:
        raise ValueError(f"{path}: not a little-endian microsecond pcap (magic {magic:#x})")
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
    datagrams: list[Datagram] = []
    offset = _GLOBAL.size
    index = 0
    while offset < len(data):
        _sec, _usec, caplen, origlen = _RECORD.unpack_from(data, offset)
        frame = data[offset + _RECORD.size : offset + _RECORD.size + caplen]
        offset += _RECORD.size + caplen
        index += 1
        if caplen != origlen or len(frame) < 14 + 20:
            continue
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        if ethertype != 0x0800:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
        payload = ip[ihl + 8 : ihl + length]
        datagrams.append(
            Datagram(index, socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport, payload)
        )
    return datagrams


def dhcp_datagrams(path: Path) -> list[Datagram]:
    return [d for d in read_udp(path) if {d.sport, d.dport} & {67, 68, 4011}]


CAPTURES = ["seabios-ipxe-rom.pcap", "ovmf-ipxe-efi-rom.pcap", "ovmf-edk2-pxe-then-ipxe.pcap"]


def capture(name: str) -> list[Datagram]:
    """The DHCP datagrams of one reference capture."""
    return dhcp_datagrams(reference_dir() / name)


def all_dhcp() -> list[tuple[str, Datagram]]:
    found: list[tuple[str, Datagram]] = []
    for name in CAPTURES:
        found += [(name, d) for d in dhcp_datagrams(reference_dir() / name)]
    return found
