"""The real proxyDHCP socket loop: loopback on unprivileged ports, and on 67/4011 in a network namespace (root)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pxe_pcap import capture

from homelab_pxe.dhcp import ACK, OFFER, decode
from homelab_pxe.dhcp_server import DhcpServer, Endpoints
from homelab_pxe.proxy import ProxyConfig

CONFIG = ProxyConfig(server_ip=IPv4Address("127.0.0.1"), http_base="http://127.0.0.1:8080")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.fixture
def server(client: socket.socket) -> Iterator[DhcpServer]:
    endpoints = Endpoints(
        bind=IPv4Address("127.0.0.1"),
        dhcp_port=0,
        proxy_port=0,
        reply_address=IPv4Address("127.0.0.1"),
        client_port=client.getsockname()[1],
    )
    srv = DhcpServer(CONFIG, endpoints)
    srv.start()
    yield srv
    srv.stop()


def edk2_discover() -> bytes:
    return capture("ovmf-edk2-pxe-then-ipxe.pcap")[0].payload


def test_discover_on_the_dhcp_port_gets_an_offer(server: DhcpServer, client: socket.socket) -> None:
    client.sendto(edk2_discover(), ("127.0.0.1", server.port("dhcp")))
    reply = decode(client.recv(2048))
    assert reply.message_type == OFFER
    assert reply.file == b"ipxe.efi"
    assert reply.yiaddr == IPv4Address(0)


def test_request_on_the_proxy_port_gets_an_ack_sent_back_to_its_source(
    server: DhcpServer, client: socket.socket
) -> None:
    request = next(d.payload for d in capture("seabios-ipxe-rom.pcap") if d.dport == 67 and len(d.payload) == 412)
    client.sendto(request, ("127.0.0.1", server.port("proxy")))
    reply = decode(client.recv(2048))
    assert reply.message_type == ACK
    assert reply.file.startswith(b"http://127.0.0.1:8080/boot.ipxe?")


def test_non_pxe_packet_is_counted_as_ignored(server: DhcpServer, client: socket.socket) -> None:
    router_offer = next(d.payload for d in capture("seabios-ipxe-rom.pcap") if d.sport == 67)
    before = counter("homelab_pxe_dhcp_ignored_total", reason="not-a-request")
    client.sendto(router_offer, ("127.0.0.1", server.port("dhcp")))
    client.sendto(edk2_discover(), ("127.0.0.1", server.port("dhcp")))
    assert decode(client.recv(2048)).message_type == OFFER  # only the PXE packet was answered
    assert counter("homelab_pxe_dhcp_ignored_total", reason="not-a-request") == before + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.binary(min_size=1, max_size=600), min_size=1, max_size=5))
def test_garbage_on_the_wire_never_stops_the_server(
    server: DhcpServer, client: socket.socket, garbage: list[bytes]
) -> None:
    before = counter("homelab_pxe_dhcp_malformed_total")
    sent_malformed = 0
    for raw in garbage:
        client.sendto(raw, ("127.0.0.1", server.port("dhcp")))
        client.sendto(raw[:239], ("127.0.0.1", server.port("proxy")))  # too short: always malformed
        sent_malformed += 1
    client.sendto(edk2_discover(), ("127.0.0.1", server.port("dhcp")))
    while True:  # skip replies to any garbage that happened to be a valid PXE request
        reply = decode(client.recv(2048))
        if reply.xid == decode(edk2_discover()).xid and reply.file == b"ipxe.efi":
            break
    assert counter("homelab_pxe_dhcp_malformed_total") >= before + sent_malformed


def test_truncated_captures_are_dropped_and_counted(server: DhcpServer, client: socket.socket) -> None:
    before = counter("homelab_pxe_dhcp_malformed_total")
    discover = edk2_discover()
    for cut in (0, 1, 100, 239, 243, 245):
        client.sendto(discover[:cut], ("127.0.0.1", server.port("dhcp")))
    client.sendto(discover, ("127.0.0.1", server.port("dhcp")))
    assert decode(client.recv(2048)).message_type == OFFER
    # 0, 1, 100, 239 and 245 bytes do not decode (an empty datagram included); 243 ends on an option boundary:
    # it decodes, lacks the PXE options and is ignored, not malformed.
    assert counter("homelab_pxe_dhcp_malformed_total") == before + 5


NETNS_SCRIPT = r"""
import socket, sys
from ipaddress import IPv4Address
from homelab_pxe.dhcp_server import DhcpServer, Endpoints
from homelab_pxe.proxy import ProxyConfig
srv = DhcpServer(ProxyConfig(IPv4Address("10.99.0.2"), "http://10.99.0.2:8080"), Endpoints(interface="pxe-srv"))
srv.start()
print("ready", flush=True)
sys.stdin.read()
srv.stop()
"""


@pytest.mark.root
def test_real_ports_67_and_4011_answer_a_broadcast_discover_in_a_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and binds UDP 67/4011")
    ns_server, ns_client = f"pxe-s{os.getpid()}", f"pxe-c{os.getpid()}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    ip("netns", "add", ns_server)
    ip("netns", "add", ns_client)
    try:
        ip("link", "add", "pxe-srv", "netns", ns_server, "type", "veth", "peer", "pxe-cli", "netns", ns_client)
        ip("-n", ns_server, "addr", "add", "10.99.0.2/24", "dev", "pxe-srv")
        ip("-n", ns_server, "link", "set", "pxe-srv", "up")
        ip("-n", ns_client, "addr", "add", "10.99.0.50/24", "dev", "pxe-cli")
        ip("-n", ns_client, "link", "set", "pxe-cli", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns_server, sys.executable, "-c", NETNS_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            client_code = (
                "import socket,sys\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'pxe-cli')\n"
                "s.bind(('0.0.0.0',68)); s.settimeout(15)\n"
                "s.sendto(sys.stdin.buffer.read(),('255.255.255.255',67))\n"
                "sys.stdout.buffer.write(s.recv(2048))\n"
            )
            done = subprocess.run(
                ["ip", "netns", "exec", ns_client, sys.executable, "-c", client_code],
                input=edk2_discover(),
                capture_output=True,
                check=True,
                timeout=30,
            )
            offer = decode(done.stdout)
            assert offer.message_type == OFFER
            assert offer.siaddr == IPv4Address("10.99.0.2")
            assert offer.options[54] == IPv4Address("10.99.0.2").packed
            client_code_4011 = (
                "import socket,sys\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "s.bind(('10.99.0.50',68)); s.settimeout(15)\n"
                "s.sendto(sys.stdin.buffer.read(),('10.99.0.2',4011))\n"
                "sys.stdout.buffer.write(s.recv(2048))\n"
            )
            request = next(d.payload for d in capture("ovmf-edk2-pxe-then-ipxe.pcap") if len(d.payload) == 359)
            done = subprocess.run(
                ["ip", "netns", "exec", ns_client, sys.executable, "-c", client_code_4011],
                input=request,
                capture_output=True,
                check=True,
                timeout=30,
            )
            assert decode(done.stdout).message_type == ACK
        finally:
            server.communicate("", timeout=20)
    finally:
        ip("netns", "del", ns_server)
        ip("netns", "del", ns_client)
