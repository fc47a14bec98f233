"""The DHCP codec against the reference captures and hand-made edge cases."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from pxe_pcap import Datagram, all_dhcp

from homelab_pxe.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    MAGIC_COOKIE,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    DhcpDecodeError,
    DhcpPacket,
    decode,
    encode,
    user_classes,
)

PACKETS = all_dhcp()


def test_the_reference_captures_hold_dhcp_packets() -> None:
    assert len(PACKETS) == 5 + 5 + 10


@pytest.mark.parametrize(("capture", "datagram"), PACKETS, ids=[f"{c}{d}" for c, d in PACKETS])
def test_every_captured_packet_round_trips_to_identical_bytes(capture: str, datagram: Datagram) -> None:
    packet = decode(datagram.payload)
    assert encode(packet) == datagram.payload


def test_captured_discover_decodes_to_its_fields() -> None:
    discover = next(d for c, d in PACKETS if c.startswith("seabios") and d.dport == 67)
    packet = decode(discover.payload)
    assert packet.message_type == DISCOVER
    assert packet.op == BOOTREQUEST
    assert packet.mac == "52:54:00:12:34:56"
    assert packet.options[OPT_CLIENT_ARCH] == b"\x00\x00"
    assert packet.options[60] == b"PXEClient:Arch:00000:UNDI:002001"
    assert packet.options[77] == b"iPXE"


def _base(options: dict[int, bytes]) -> DhcpPacket:
    return DhcpPacket(op=1, xid=0x1234, chaddr=bytes.fromhex("525400123456") + bytes(10), options=options)


def test_long_option_is_split_and_concatenated_per_rfc3396() -> None:
    value = bytes(range(256)) * 2  # 512 bytes: three parts on the wire
    raw = encode(_base({OPT_MESSAGE_TYPE: b"\x01", 224: value}))
    assert raw.count(bytes((224, 255))) == 2
    assert decode(raw).options[224] == value


def test_pad_options_and_bytes_after_end_decode_to_the_same_content() -> None:
    packet = _base({OPT_MESSAGE_TYPE: b"\x01", 60: b"PXEClient"})
    canonical = encode(packet)
    header = canonical[:240]
    padded = header + b"\x00\x00" + b"\x35\x01\x01" + b"\x00" + b"\x3c\x09PXEClient" + b"\xff" + b"\xaa" * 40
    assert decode(padded) == decode(canonical)
    assert encode(decode(padded)) == canonical  # same semantic content; padding normalised


def test_option_overload_continues_options_in_file_then_sname() -> None:
    packet = _base({OPT_MESSAGE_TYPE: b"\x01"})
    raw = bytearray(encode(packet, min_size=0))
    file_opts = b"\x3c\x09PXEClient\xff"
    sname_opts = b"\x5d\x02\x00\x07\xff"
    raw[108 : 108 + len(file_opts)] = file_opts  # file field starts at 108
    raw[44 : 44 + len(sname_opts)] = sname_opts  # sname field starts at 44
    raw = raw[:-1] + b"\x34\x01\x03\xff"  # option 52 = 3 (both), then end
    decoded = decode(bytes(raw))
    assert decoded.options == {OPT_MESSAGE_TYPE: b"\x01", 60: b"PXEClient", OPT_CLIENT_ARCH: b"\x00\x07"}
    assert decoded.file == b""
    assert decoded.sname == b""


def test_replies_are_padded_to_300_bytes() -> None:
    assert len(encode(_base({OPT_MESSAGE_TYPE: b"\x02"}))) == 300


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "shorter than"),
        (b"\x01" * 239, "shorter than"),
        (b"\x03" + bytes(235) + MAGIC_COOKIE, "op is 3"),
        (b"\x01\x01\x11" + bytes(233) + MAGIC_COOKIE, "hlen is 17"),
        (b"\x01\x01\x06" + bytes(233) + b"\x00\x00\x00\x00", "magic cookie"),
        (b"\x01\x01\x06" + bytes(233) + MAGIC_COOKIE + b"\x35", "no length byte"),
        (b"\x01\x01\x06" + bytes(233) + MAGIC_COOKIE + b"\x35\x05\x01", "claims 5 bytes"),
        (b"\x01\x01\x06" + bytes(233) + MAGIC_COOKIE + b"\x34\x01\x07\xff", "overload"),
    ],
)
def test_malformed_packets_raise_a_named_error(raw: bytes, problem: str) -> None:
    with pytest.raises(DhcpDecodeError, match=problem):
        decode(raw)


def test_encode_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="file is 128 bytes"):
        encode(DhcpPacket(op=2, xid=1, chaddr=bytes(16), file=b"x" * 128))
    with pytest.raises(ValueError, match="option code 255"):
        encode(_base({255: b"x"}))


def test_zero_length_option_survives() -> None:
    assert decode(encode(_base({80: b""}))).options[80] == b""


@pytest.mark.parametrize(
    ("value", "classes"),
    [
        (b"iPXE", [b"iPXE"]),
        (b"\x04iPXE", [b"iPXE"]),
        (b"\x04iPXE\x03foo", [b"iPXE", b"foo"]),
        (b"\x00", [b"\x00"]),
        (b"", [b""]),
    ],
)
def test_user_class_is_read_raw_or_rfc3004(value: bytes, classes: list[bytes]) -> None:
    assert user_classes(value) == classes


def test_addresses_decode_as_ipv4() -> None:
    offer = next(d for c, d in PACKETS if d.src == "10.77.0.2")
    packet = decode(offer.payload)
    assert packet.siaddr == IPv4Address("10.77.0.2")
    assert packet.yiaddr == IPv4Address(0)
