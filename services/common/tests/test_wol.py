from __future__ import annotations

import socket

import pytest

from homelab_common.wol import mac_bytes, magic_packet, wake_on_lan


@pytest.mark.parametrize("mac", ["52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456", "525400123456"])
def test_common_mac_notations_parse(mac: str) -> None:
    assert mac_bytes(mac) == bytes.fromhex("525400123456")


@pytest.mark.parametrize("mac", ["", "52:54:00:12:34", "zz:54:00:12:34:56", "52:54:00:12:34:56:78"])
def test_bad_mac_is_refused(mac: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        mac_bytes(mac)


def test_magic_packet_is_six_ff_then_sixteen_macs() -> None:
    packet = magic_packet("52:54:00:12:34:56")
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("525400123456") * 16


def test_packet_arrives_on_a_udp_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        sent = wake_on_lan("52:54:00:12:34:56", "127.0.0.1", receiver.getsockname()[1])
        assert receiver.recv(200) == sent == magic_packet("52:54:00:12:34:56")
