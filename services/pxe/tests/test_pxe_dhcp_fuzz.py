"""Random and truncated packets against the codec and the proxyDHCP handler: only the named error may escape."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st
from pxe_pcap import all_dhcp, capture

from homelab_pxe.dhcp import MAGIC_COOKIE, DhcpDecodeError, decode, encode
from homelab_pxe.proxy import Ignored, ProxyConfig, Reply, handle

CONFIG = ProxyConfig(server_ip=IPv4Address("10.77.0.2"), http_base="http://10.77.0.2:8080")
CAPTURED = [d.payload for _, d in all_dhcp()] or [bytes(236) + MAGIC_COOKIE]


def decide(raw: bytes) -> Reply | Ignored | None:
    """What the server does with ``raw``: a decision, or None when the codec refuses it by name."""
    try:
        packet = decode(raw)
    except DhcpDecodeError:
        return None
    for port in ("dhcp", "proxy"):
        result = handle(packet, CONFIG, port)  # type: ignore[arg-type]
        if isinstance(result, Reply):
            assert result.packet.yiaddr == IPv4Address(0)
            assert decode(encode(result.packet)).xid == packet.xid
    return result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_escape_the_named_error(raw: bytes) -> None:
    decide(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=360))
def test_random_options_after_a_valid_header_never_escape(options: bytes) -> None:
    decide(b"\x01\x01\x06" + bytes(233) + MAGIC_COOKIE + options)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CAPTURED), st.data())
def test_truncated_and_corrupted_captures_never_escape(raw: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    decide(raw[:cut])
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    decide(raw[:position] + bytes((value,)) + raw[position + 1 :])


def test_pxe_discover_with_every_architecture_value_is_decided() -> None:
    base = decode(capture("seabios-ipxe-rom.pcap")[0].payload)
    for arch in range(0, 65536, 97):
        packet = base.with_options({**base.options, 93: arch.to_bytes(2, "big")})
        assert isinstance(handle(packet, CONFIG), Reply | Ignored)
