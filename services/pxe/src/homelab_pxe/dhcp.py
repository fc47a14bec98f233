"""A small DHCP codec: the fixed BOOTP header, the magic cookie and TLV options.

Written here rather than borrowed because pyroute2's encoder silently drops the options PXE lives on (43, 93, 97,
175). Decoding follows RFC 2131/2132 and RFC 3396: pad (0) is skipped, end (255) stops, an option that appears
several times is one value (the parts concatenated in order), and option 52 (overload) continues the options in
the ``file`` then ``sname`` fields. Encoding writes the options in insertion order, splits values longer than 255
bytes into consecutive parts (RFC 3396), ends with 255 and zero-pads the packet to at least 300 bytes (the BOOTP
minimum some firmware insists on). It never overloads ``file``/``sname``.

A packet without padding options and without overload decodes and re-encodes to the same bytes; one that used pad
options between options, or trailing bytes after end, re-encodes to the same semantic content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
MAGIC_COOKIE = b"\x63\x82\x53\x63"
MIN_PACKET = 300
BOOTREQUEST = 1
BOOTREPLY = 2

PAD = 0
END = 255
OPT_SUBNET_MASK = 1
OPT_REQUESTED_IP = 50
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_BOOTFILE = 67
OPT_VENDOR_SPECIFIC = 43
OPT_USER_CLASS = 77
OPT_CLIENT_ARCH = 93
OPT_CLIENT_NDI = 94
OPT_CLIENT_UUID = 97
OPT_IPXE_ENCAP = 175

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_TYPES = {
    DISCOVER: "DISCOVER",
    OFFER: "OFFER",
    REQUEST: "REQUEST",
    DECLINE: "DECLINE",
    ACK: "ACK",
    NAK: "NAK",
    RELEASE: "RELEASE",
    INFORM: "INFORM",
}

ANY = IPv4Address(0)
_OVERLOAD_FILE = 1
_OVERLOAD_SNAME = 2


class DhcpDecodeError(ValueError):
    """The bytes are not a well-formed DHCP packet; the message says what is wrong and where."""


@dataclass(frozen=True)
class DhcpPacket:
    """One DHCP message. ``options`` maps code → value with parts already concatenated, in wire order."""

    op: int
    xid: int
    chaddr: bytes
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = ANY
    yiaddr: IPv4Address = ANY
    siaddr: IPv4Address = ANY
    giaddr: IPv4Address = ANY
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    @property
    def mac(self) -> str:
        """The client hardware address as ``52:54:00:12:34:56`` (``hlen`` bytes of ``chaddr``)."""
        return ":".join(f"{b:02x}" for b in self.chaddr[: self.hlen])

    def with_options(self, options: dict[int, bytes]) -> DhcpPacket:
        return replace(self, options=options)


def _field(raw: bytes) -> bytes:
    """A NUL-terminated header string (``sname``/``file``) without the NUL padding."""
    return raw.split(b"\0", 1)[0]


def _parse_options(data: bytes, where: str, into: list[tuple[int, bytes]]) -> bool:
    """Append the options in ``data`` to ``into``; return whether an end option was seen."""
    index = 0
    while index < len(data):
        code = data[index]
        if code == PAD:
            index += 1
            continue
        if code == END:
            return True
        if index + 1 >= len(data):
            raise DhcpDecodeError(f"{where}: option {code} at offset {index} has no length byte")
        length = data[index + 1]
        start = index + 2
        if start + length > len(data):
            raise DhcpDecodeError(
                f"{where}: option {code} at offset {index} claims {length} bytes, only {len(data) - start} left"
            )
        into.append((code, data[start : start + length]))
        index = start + length
    return False


def decode(data: bytes) -> DhcpPacket:
    """Parse one DHCP message; raise :class:`DhcpDecodeError` naming the problem."""
    if len(data) < HEADER.size + len(MAGIC_COOKIE):
        raise DhcpDecodeError(f"packet is {len(data)} bytes, shorter than the {HEADER.size + 4}-byte DHCP header")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file) = HEADER.unpack_from(
        data
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DhcpDecodeError(f"op is {op}, neither BOOTREQUEST (1) nor BOOTREPLY (2)")
    if hlen > len(chaddr):
        raise DhcpDecodeError(f"hlen is {hlen}, longer than the 16-byte chaddr field")
    cookie = data[HEADER.size : HEADER.size + 4]
    if cookie != MAGIC_COOKIE:
        raise DhcpDecodeError(f"magic cookie is {cookie.hex()}, not {MAGIC_COOKIE.hex()}")
    parts: list[tuple[int, bytes]] = []
    _parse_options(data[HEADER.size + 4 :], "options", parts)
    overload = next((value for code, value in parts if code == OPT_OVERLOAD), None)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DhcpDecodeError(f"option 52 (overload) is {overload.hex()}, not 1, 2 or 3")
        if overload[0] & _OVERLOAD_FILE:
            _parse_options(file, "file (overloaded)", parts)
            file = b""
        if overload[0] & _OVERLOAD_SNAME:
            _parse_options(sname, "sname (overloaded)", parts)
            sname = b""
    options: dict[int, bytes] = {}
    for code, value in parts:
        if code == OPT_OVERLOAD:
            continue
        options[code] = options.get(code, b"") + value
    return DhcpPacket(
        op=op,
        htype=htype,
        hlen=hlen,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ciaddr),
        yiaddr=IPv4Address(yiaddr),
        siaddr=IPv4Address(siaddr),
        giaddr=IPv4Address(giaddr),
        chaddr=chaddr,
        sname=_field(sname),
        file=_field(file),
        options=options,
    )


def encode(packet: DhcpPacket, min_size: int = MIN_PACKET) -> bytes:
    """Serialise ``packet``; values over 255 bytes become consecutive parts, padded with zeros to ``min_size``."""
    if len(packet.sname) > 63:
        raise ValueError(f"sname is {len(packet.sname)} bytes; at most 63 fit with the terminating NUL")
    if len(packet.file) > 127:
        raise ValueError(f"file is {len(packet.file)} bytes; at most 127 fit with the terminating NUL")
    if len(packet.chaddr) > 16:
        raise ValueError(f"chaddr is {len(packet.chaddr)} bytes; the field holds 16")
    out = bytearray(
        HEADER.pack(
            packet.op,
            packet.htype,
            packet.hlen,
            packet.hops,
            packet.xid,
            packet.secs,
            packet.flags,
            packet.ciaddr.packed,
            packet.yiaddr.packed,
            packet.siaddr.packed,
            packet.giaddr.packed,
            packet.chaddr,
            packet.sname,
            packet.file,
        )
    )
    out += MAGIC_COOKIE
    for code, value in packet.options.items():
        if code in (PAD, END) or not 0 < code < 255:
            raise ValueError(f"option code {code} cannot carry a value")
        if not value:
            out += bytes((code, 0))
        for offset in range(0, len(value), 255):
            part = value[offset : offset + 255]
            out += bytes((code, len(part))) + part
    out.append(END)
    if len(out) < min_size:
        out += bytes(min_size - len(out))
    return bytes(out)


def user_classes(value: bytes) -> list[bytes]:
    """Option 77 as a list of classes: RFC 3004 length-prefixed, or (older iPXE, most firmware) one raw string."""
    classes: list[bytes] = []
    index = 0
    while index < len(value):
        length = value[index]
        end = index + 1 + length
        if length == 0 or end > len(value):
            return [value]
        classes.append(value[index + 1 : end])
        index = end
    return classes if classes else [value]
