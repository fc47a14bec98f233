"""proxyDHCP decisions for each firmware in the captures, and for each architecture we boot."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from pxe_pcap import capture

from homelab_pxe.dhcp import ACK, OFFER, REQUEST, DhcpPacket, decode, encode
from homelab_pxe.proxy import PXE_VENDOR_OPTIONS, Ignored, ProxyConfig, Reply, handle

CONFIG = ProxyConfig(server_ip=IPv4Address("10.77.0.2"), http_base="http://10.77.0.2:8080")
SCRIPT_URL = b"http://10.77.0.2:8080/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}"


def client_packets(name: str, message: int) -> list[DhcpPacket]:
    packets = [decode(d.payload) for d in capture(name) if d.dport == 67]
    return [p for p in packets if p.message_type == message]


def reply_to(packet: DhcpPacket, port: str = "dhcp") -> Reply:
    result = handle(packet, CONFIG, port)  # type: ignore[arg-type]
    assert isinstance(result, Reply), result
    return result


def test_edk2_discover_gets_the_offer_that_booted_it_byte_for_byte() -> None:
    datagrams = capture("ovmf-edk2-pxe-then-ipxe.pcap")
    discover = decode(datagrams[0].payload)
    captured_offer = next(d for d in datagrams if d.src == "10.77.0.2")
    reply = reply_to(discover)
    assert reply.bootfile == "ipxe.efi"
    assert reply.arch == "x86_64-efi"
    assert encode(reply.packet) == captured_offer.payload


@pytest.mark.parametrize(
    ("name", "arch"),
    [("seabios-ipxe-rom.pcap", "x86-bios"), ("ovmf-ipxe-efi-rom.pcap", "x86_64-efi")],
)
def test_ipxe_rom_discover_gets_its_boot_script_url(name: str, arch: str) -> None:
    (discover,) = client_packets(name, 1)
    reply = reply_to(discover)
    packet = reply.packet
    assert reply.ipxe
    assert reply.arch == arch
    assert packet.file == SCRIPT_URL
    assert packet.message_type == OFFER
    assert packet.yiaddr == IPv4Address(0)
    assert packet.siaddr == IPv4Address("10.77.0.2")
    assert packet.options[43] == PXE_VENDOR_OPTIONS
    assert packet.options[54] == IPv4Address("10.77.0.2").packed
    assert packet.options[60] == b"PXEClient"
    assert packet.options[97] == discover.options[97]
    assert packet.xid == discover.xid
    assert packet.chaddr == discover.chaddr
    assert len(encode(packet)) >= 300


def test_edk2_then_its_ipxe_get_binary_then_script() -> None:
    discovers = client_packets("ovmf-edk2-pxe-then-ipxe.pcap", 1)
    assert [reply_to(p).bootfile for p in discovers] == ["ipxe.efi", SCRIPT_URL.decode()]


@pytest.mark.parametrize("name", ["seabios-ipxe-rom.pcap", "ovmf-ipxe-efi-rom.pcap", "ovmf-edk2-pxe-then-ipxe.pcap"])
def test_request_to_the_routers_dhcp_is_not_answered_on_67(name: str) -> None:
    for request in client_packets(name, REQUEST):
        assert handle(request, CONFIG, "dhcp") == Ignored("not-for-us")


@pytest.mark.parametrize("name", ["seabios-ipxe-rom.pcap", "ovmf-ipxe-efi-rom.pcap", "ovmf-edk2-pxe-then-ipxe.pcap"])
def test_request_on_4011_gets_an_ack_with_the_boot_file(name: str) -> None:
    for request in client_packets(name, REQUEST):
        reply = reply_to(replace(request, ciaddr=IPv4Address("10.77.0.111")), "proxy")
        assert reply.packet.message_type == ACK
        assert reply.packet.yiaddr == IPv4Address(0)
        assert reply.packet.ciaddr == IPv4Address("10.77.0.111")
        assert reply.packet.options[97] == request.options[97]


def test_request_naming_us_as_server_on_67_gets_an_ack() -> None:
    (request,) = client_packets("seabios-ipxe-rom.pcap", REQUEST)
    ours = request.with_options({**request.options, 54: IPv4Address("10.77.0.2").packed})
    assert reply_to(ours).packet.message_type == ACK


@pytest.mark.parametrize("name", ["seabios-ipxe-rom.pcap", "ovmf-ipxe-efi-rom.pcap", "ovmf-edk2-pxe-then-ipxe.pcap"])
def test_dhcp_server_replies_are_ignored(name: str) -> None:
    for datagram in capture(name):
        if datagram.sport == 67:
            assert handle(decode(datagram.payload), CONFIG) == Ignored("not-a-request")


def _discover(
    arch: int | None, vendor: bytes | None = b"PXEClient:Arch:00007:UNDI:003000", **extra: bytes
) -> DhcpPacket:
    options: dict[int, bytes] = {53: b"\x01"}
    if vendor is not None:
        options[60] = vendor
    if arch is not None:
        options[93] = arch.to_bytes(2, "big")
    options.update({int(k.removeprefix("o")): v for k, v in extra.items()})
    return DhcpPacket(op=1, xid=7, chaddr=bytes.fromhex("525400aabbcc") + bytes(10), options=options)


def test_client_without_pxe_vendor_class_gets_no_reply() -> None:
    assert handle(_discover(7, vendor=None), CONFIG) == Ignored("not-pxe")
    assert handle(_discover(7, vendor=b"MSFT 5.0"), CONFIG) == Ignored("not-pxe")


def test_pxe_vendor_class_without_architecture_gets_no_reply() -> None:
    assert handle(_discover(None), CONFIG) == Ignored("not-pxe")


def test_malformed_architecture_option_gets_no_reply() -> None:
    packet = _discover(None, o93=b"\x07")
    assert handle(packet, CONFIG) == Ignored("unsupported-arch")


@pytest.mark.parametrize(
    ("arch", "vendor", "bootfile", "label"),
    [
        (0, b"PXEClient", "undionly.kpxe", "x86-bios"),
        (6, b"PXEClient", "ipxe.efi", "x86-efi-ia32"),
        (7, b"PXEClient", "ipxe.efi", "x86_64-efi"),
        (9, b"PXEClient", "ipxe.efi", "x86_64-efi"),
        (11, b"PXEClient", "snp.efi", "arm64-efi"),
        (16, b"HTTPClient", "http://10.77.0.2:8080/ipxe/ipxe.efi", "x86_64-efi-http"),
        (19, b"HTTPClient", "http://10.77.0.2:8080/ipxe/snp.efi", "arm64-efi-http"),
    ],
)
def test_boot_file_follows_the_client_architecture(arch: int, vendor: bytes, bootfile: str, label: str) -> None:
    reply = reply_to(_discover(arch, vendor=vendor))
    assert reply.bootfile == bootfile
    assert reply.packet.file == bootfile.encode()
    assert reply.arch == label


def test_uefi_http_boot_reply_says_httpclient_without_pxe_vendor_options() -> None:
    packet = reply_to(_discover(16, vendor=b"HTTPClient:Arch:00016:UNDI:003001")).packet
    assert packet.options[60] == b"HTTPClient"
    assert 43 not in packet.options


def test_arm32_efi_is_not_answered() -> None:
    assert handle(_discover(10), CONFIG) == Ignored("unsupported-arch")


@pytest.mark.parametrize("user_class", [b"iPXE", b"\x04iPXE", b"\x03foo\x04iPXE"])
def test_ipxe_user_class_raw_or_rfc3004_gets_the_script(user_class: bytes) -> None:
    assert reply_to(_discover(0, o77=user_class)).packet.file == SCRIPT_URL


def test_ipxe_option_175_alone_gets_the_script() -> None:
    assert reply_to(_discover(7, o175=b"\xb1\x05\x01\x1a\xf4\x10\x00")).ipxe


def test_missing_uuid_is_tolerated_and_not_invented() -> None:
    assert 97 not in reply_to(_discover(7)).packet.options


def test_release_and_decline_get_no_reply() -> None:
    for message in (b"\x04", b"\x07"):
        packet = _discover(7, o53=message)
        assert handle(packet, CONFIG) == Ignored("message-type")
        assert handle(packet, CONFIG, "proxy") == Ignored("message-type")


def test_boot_url_too_long_for_the_file_field_goes_in_option_67() -> None:
    config = replace(CONFIG, http_base="http://10.77.0.2:8080/" + "x" * 80)
    result = handle(_discover(7, o77=b"iPXE"), config)
    assert isinstance(result, Reply)
    assert result.packet.file == b""
    assert result.packet.options[67] == result.bootfile.encode()
    assert decode(encode(result.packet)).options[67] == result.bootfile.encode()
