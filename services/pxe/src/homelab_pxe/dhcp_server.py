"""The proxyDHCP socket loop around :func:`homelab_pxe.proxy.handle`: UDP 67 and 4011, one thread.

The loop never dies on a packet: a packet that does not decode is dropped, counted and logged at debug (a LAN
has plenty of odd DHCP traffic); anything else that goes wrong handling one packet is counted and logged with
its traceback, and the loop carries on with the next.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address

from homelab_pxe import metrics
from homelab_pxe.dhcp import MESSAGE_TYPES, DhcpDecodeError, decode, encode
from homelab_pxe.proxy import Ignored, Port, ProxyConfig, handle

log = logging.getLogger("homelab.pxe.dhcp")
MAX_PACKET = 4096


ANY = IPv4Address("0.0.0.0")
BROADCAST = IPv4Address("255.255.255.255")


@dataclass(frozen=True)
class Endpoints:
    bind: IPv4Address = ANY
    dhcp_port: int = 67
    proxy_port: int = 4011
    reply_address: IPv4Address = BROADCAST
    client_port: int = 68
    interface: str | None = None


def open_socket(bind: IPv4Address, port: int, interface: str | None) -> socket.socket:
    """A UDP socket that may broadcast, bound to ``interface`` (SO_BINDTODEVICE) so replies leave the right LAN."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((str(bind), port))
    except OSError:
        sock.close()
        raise
    return sock


class DhcpServer:
    """Answers PXE clients on the dhcp and proxy ports until :meth:`stop`."""

    def __init__(self, config: ProxyConfig, endpoints: Endpoints) -> None:
        self.config = config
        self.endpoints = endpoints
        self._sockets: dict[Port, socket.socket] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def port(self, which: Port) -> int:
        port: int = self._sockets[which].getsockname()[1]
        return port

    def start(self) -> None:
        ep = self.endpoints
        self._sockets = {
            "dhcp": open_socket(ep.bind, ep.dhcp_port, ep.interface),
            "proxy": open_socket(ep.bind, ep.proxy_port, ep.interface),
        }
        self._thread = threading.Thread(target=self._run, name="pxe-dhcp", daemon=True)
        self._thread.start()
        log.info(
            "proxyDHCP serving",
            extra={
                "interface": ep.interface,
                "server_ip": str(self.config.server_ip),
                "ports": [self.port("dhcp"), self.port("proxy")],
            },
        )

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in self._sockets.values():
            sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for which, sock in self._sockets.items():
                selector.register(sock, selectors.EVENT_READ, which)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    sock = self._sockets[key.data]
                    try:
                        data, source = sock.recvfrom(MAX_PACKET)
                    except OSError as exc:  # e.g. ICMP-induced errors on the socket: keep serving
                        log.debug("receive failed", extra={"error": str(exc)})
                        continue
                    self.process(data, source, key.data)

    def process(self, data: bytes, source: tuple[str, int], which: Port) -> None:
        """Decide and send the reply to one datagram; never raises."""
        metrics.DHCP_PACKETS.labels(which).inc()
        try:
            request = decode(data)
        except DhcpDecodeError as exc:
            metrics.MALFORMED.inc()
            log.debug("malformed DHCP packet dropped", extra={"source": f"{source[0]}:{source[1]}", "error": str(exc)})
            return
        try:
            result = handle(request, self.config, which)
            if isinstance(result, Ignored):
                metrics.IGNORED.labels(result.reason).inc()
                log.debug("not answered", extra={"mac": request.mac, "reason": result.reason, "port": which})
                return
            if which == "proxy":
                destination = source
            else:
                destination = (str(self.endpoints.reply_address), self.endpoints.client_port)
            self._sockets[which].sendto(encode(result.packet), destination)
            metrics.OFFERS.labels(result.arch, "script" if result.ipxe else "binary").inc()
            log.info(
                "proxyDHCP reply",
                extra={
                    "mac": request.mac,
                    "type": MESSAGE_TYPES.get(result.packet.message_type or 0, "?"),
                    "arch": result.arch,
                    "bootfile": result.bootfile,
                    "port": which,
                },
            )
        except Exception:
            metrics.DHCP_ERRORS.inc()
            log.exception("handling a DHCP packet failed", extra={"mac": request.mac, "port": which})
