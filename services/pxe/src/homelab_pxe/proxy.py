"""proxyDHCP decisions: which PXE client gets which boot file. Pure: a request and a config in, a reply or a reason out.

The home router's DHCP server hands out addresses; we only add the boot information (RFC 4578 / PXE 2.1
"proxyDHCP"), so a reply never carries an address (yiaddr stays 0.0.0.0). A client that is already iPXE (user class
``iPXE`` or the iPXE option 175) is pointed at its HTTP boot script instead of the iPXE binary again, which is what
stops the chainload loop. iPXE expands ``${...}`` settings in the DHCP filename (``fetch_next_server_and_filename``
calls ``expand_settings``), so the script URL carries the client's own MAC, UUID and build architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from homelab_pxe.dhcp import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    DISCOVER,
    INFORM,
    OFFER,
    OPT_BOOTFILE,
    OPT_CLIENT_ARCH,
    OPT_CLIENT_UUID,
    OPT_IPXE_ENCAP,
    OPT_MESSAGE_TYPE,
    OPT_SERVER_ID,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    OPT_VENDOR_SPECIFIC,
    REQUEST,
    DhcpPacket,
    user_classes,
)

#: PXE_DISCOVERY_CONTROL (sub-option 6) = 8: skip boot server discovery, download the file named in this offer.
PXE_VENDOR_OPTIONS = b"\x06\x01\x08\xff"
#: What iPXE fills in when it chains to the script URL (see the module docstring).
SCRIPT_QUERY = "mac=${mac}&uuid=${uuid}&arch=${buildarch}"

Port = Literal["dhcp", "proxy"]


@dataclass(frozen=True)
class Firmware:
    """What option 93 says about the client: a label for metrics, which boot file fits, and whether it boots HTTP."""

    label: str
    bootfile: Literal["bios", "efi_ia32", "efi_x64", "efi_arm64"]
    http: bool = False


#: RFC 4578 option 93 values (IANA "Processor Architecture Types") we can boot. 10 (ARM32 EFI) has no iPXE build here.
ARCHITECTURES: dict[int, Firmware] = {
    0: Firmware("x86-bios", "bios"),
    6: Firmware("x86-efi-ia32", "efi_ia32"),
    7: Firmware("x86_64-efi", "efi_x64"),
    9: Firmware("x86_64-efi", "efi_x64"),
    11: Firmware("arm64-efi", "efi_arm64"),
    16: Firmware("x86_64-efi-http", "efi_x64", http=True),
    19: Firmware("arm64-efi-http", "efi_arm64", http=True),
}


@dataclass(frozen=True)
class ProxyConfig:
    """Where we serve from and the boot file names (relative to the TFTP root, also served over HTTP)."""

    server_ip: IPv4Address
    http_base: str
    bios: str = "undionly.kpxe"
    efi_ia32: str = "ipxe.efi"
    efi_x64: str = "ipxe.efi"
    efi_arm64: str = "snp.efi"

    @property
    def script_url(self) -> str:
        return f"{self.http_base}/boot.ipxe?{SCRIPT_QUERY}"

    def binary_url(self, name: str) -> str:
        return f"{self.http_base}/ipxe/{name}"


@dataclass(frozen=True)
class Reply:
    """Send ``packet``; ``arch`` labels the offer in metrics, ``ipxe`` says the client got its script URL."""

    packet: DhcpPacket
    arch: str
    bootfile: str
    ipxe: bool


@dataclass(frozen=True)
class Ignored:
    """No reply, and why (a metric label): not a PXE client, not for us, an architecture we cannot boot, ..."""

    reason: str


def is_ipxe(request: DhcpPacket) -> bool:
    """iPXE identifies itself with user class ``iPXE`` (raw or RFC 3004) and its encapsulated option 175."""
    if OPT_IPXE_ENCAP in request.options:
        return True
    value = request.options.get(OPT_USER_CLASS)
    return value is not None and b"iPXE" in user_classes(value)


def client_arch(request: DhcpPacket) -> int | None:
    """The first architecture in option 93 (a list of 16-bit values), or None when absent or malformed."""
    value = request.options.get(OPT_CLIENT_ARCH)
    if value is None or len(value) < 2 or len(value) % 2:
        return None
    return int.from_bytes(value[:2], "big")


def handle(request: DhcpPacket, config: ProxyConfig, port: Port = "dhcp") -> Reply | Ignored:
    """The proxyDHCP reply to ``request`` received on ``port`` (67 = "dhcp", 4011 = "proxy"), or why there is none."""
    if request.op != BOOTREQUEST:
        return Ignored("not-a-request")
    vendor = request.options.get(OPT_VENDOR_CLASS, b"")
    if not vendor.startswith((b"PXEClient", b"HTTPClient")) or OPT_CLIENT_ARCH not in request.options:
        return Ignored("not-pxe")
    message = request.message_type
    if port == "dhcp":
        if message == DISCOVER:
            reply_type = OFFER
        elif message == REQUEST and request.options.get(OPT_SERVER_ID) == config.server_ip.packed:
            reply_type = ACK
        elif message == REQUEST:
            return Ignored("not-for-us")
        else:
            return Ignored("message-type")
    elif message in (REQUEST, INFORM):
        reply_type = ACK
    else:
        return Ignored("message-type")
    arch = client_arch(request)
    firmware = ARCHITECTURES.get(arch) if arch is not None else None
    if firmware is None:
        return Ignored("unsupported-arch")
    ipxe = is_ipxe(request)
    binary: str = getattr(config, firmware.bootfile)
    if ipxe:
        bootfile = config.script_url
    elif firmware.http:
        bootfile = config.binary_url(binary)
    else:
        bootfile = binary
    http_client = firmware.http and vendor.startswith(b"HTTPClient")
    options: dict[int, bytes] = {OPT_MESSAGE_TYPE: bytes((reply_type,))}
    if not http_client:
        options[OPT_VENDOR_SPECIFIC] = PXE_VENDOR_OPTIONS
    options[OPT_SERVER_ID] = config.server_ip.packed
    options[OPT_VENDOR_CLASS] = b"HTTPClient" if http_client else b"PXEClient"
    if OPT_CLIENT_UUID in request.options:
        options[OPT_CLIENT_UUID] = request.options[OPT_CLIENT_UUID]
    encoded = bootfile.encode()
    file_field = encoded
    if len(encoded) > 127:  # does not fit the header field: option 67 carries it instead
        options[OPT_BOOTFILE] = encoded
        file_field = b""
    reply = DhcpPacket(
        op=BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr if port == "proxy" else IPv4Address(0),
        siaddr=config.server_ip,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        sname=str(config.server_ip).encode(),
        file=file_field,
        options=options,
    )
    return Reply(reply, firmware.label, bootfile, ipxe)
