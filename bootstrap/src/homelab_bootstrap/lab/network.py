"""The lab's LAN: a bridge in its own network namespace, hosts on veth pairs, QEMU machines on tap devices.

Layout (``<run>`` is ``hl-lab-<pid>-<random>``, so parallel runs never collide)::

    <run>-lan      br0 (the switch)  +  one veth port per host  +  one tap per machine (QEMU runs here)
    <run>-router   eth0 = gateway (10.77.0.1, fd77::1): dnsmasq as the home router
    <run>-boot     eth0 = boot server (10.77.0.2): pxe + autoinstall

Everything lives in namespaces, so deleting them is the whole cleanup. It always happens: on leaving the context
manager, from an atexit hook when the process ends without leaving it, and — for runs that were SIGKILLed — by
:func:`sweep_stale`, which removes namespaces whose owning PID (part of the name) no longer exists.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import secrets
import signal
import threading
from types import TracebackType

from homelab_bootstrap.lab.commands import LabError, require_tool, run

PREFIX = "hl-lab-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[0-9a-f]+-")
_ROOT_HINT = "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): are you root?"

_live: set[LabNetwork] = set()
_live_lock = threading.Lock()


def _ip(*args: str, hint: str = _ROOT_HINT) -> str:
    return run(["ip", *args], hint=hint)


def list_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list`` prints ``name (id: N)``)."""
    out = _ip("netns", "list", hint="is iproute2 installed?")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_namespace(name: str) -> None:
    """Kill every process still inside ``name``, then delete it (its interfaces go with it)."""
    pids = run(["ip", "netns", "pids", name], hint=_ROOT_HINT).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", name], hint=_ROOT_HINT)


def sweep_stale() -> list[str]:
    """Delete lab namespaces left by runs whose process is gone; returns their names. Live runs are untouched."""
    removed = []
    for name in list_namespaces():
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            delete_namespace(name)
            removed.append(name)
    return removed


class LabNetwork:
    """One lab LAN; use as a context manager (``with LabNetwork(...) as net``)."""

    def __init__(
        self,
        subnet: ipaddress.IPv4Network | str = "10.77.0.0/24",
        router_ip: ipaddress.IPv4Address | str = "10.77.0.1",
        bootserver_ip: ipaddress.IPv4Address | str = "10.77.0.2",
        ipv6_prefix: ipaddress.IPv6Network | str = "fd77::/64",
    ) -> None:
        self.subnet = ipaddress.IPv4Network(subnet)
        self.router_ip = ipaddress.IPv4Address(router_ip)
        self.bootserver_ip = ipaddress.IPv4Address(bootserver_ip)
        self.ipv6_prefix = ipaddress.IPv6Network(ipv6_prefix)
        for name, address in (("router_ip", self.router_ip), ("bootserver_ip", self.bootserver_ip)):
            if address not in self.subnet:
                raise LabError(f"{name} {address} is not inside the lab subnet {self.subnet}")
        self.run_id = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.lan_ns = f"{self.run_id}-lan"
        self.router_ns = f"{self.run_id}-router"
        self.boot_ns = f"{self.run_id}-boot"
        self._namespaces: list[str] = []
        self._taps = 0
        self._ports = 0

    @property
    def router_ipv6(self) -> ipaddress.IPv6Address:
        return self.ipv6_prefix.network_address + 1

    def create(self) -> LabNetwork:
        """Build the namespaces, bridge and host veths; on any failure, remove what was built and re-raise."""
        require_tool("ip", "iproute2")
        if os.geteuid() != 0:
            raise LabError(f"the virtual lab needs root: {_ROOT_HINT}")
        with _live_lock:
            _live.add(self)
        try:
            for ns in (self.lan_ns, self.router_ns, self.boot_ns):
                _ip("netns", "add", ns)
                self._namespaces.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.lan_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _ip("-n", self.lan_ns, "link", "set", "br0", "up")
            self.attach_host(self.router_ns, self.router_ip)
            _ip("-n", self.router_ns, "addr", "add", f"{self.router_ipv6}/{self.ipv6_prefix.prefixlen}", "dev", "eth0",
                "nodad")  # fmt: skip
            self.attach_host(self.boot_ns, self.bootserver_ip)
        except BaseException:
            self.destroy()
            raise
        return self

    def attach_host(self, namespace: str, address: ipaddress.IPv4Address) -> None:
        """Give ``namespace`` an ``eth0`` with ``address`` plugged into the bridge (a veth pair)."""
        self._ports += 1
        port = f"p{self._ports}"
        _ip("-n", self.lan_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self.lan_ns, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")

    def add_host(self, role: str, address: ipaddress.IPv4Address | str) -> str:
        """Another host on the LAN (say a laptop, or an attacker): its own namespace ``<run>-<role>`` with an
        ``eth0`` at ``address`` on the bridge; deleted with the lab. Returns the namespace's name."""
        namespace = f"{self.run_id}-{role}"
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
        self.attach_host(namespace, ipaddress.IPv4Address(address))
        return namespace

    def add_tap(self) -> str:
        """A new tap device on the bridge (in the lan namespace, where QEMU must run to open it); its name."""
        self._taps += 1
        tap = f"tap{self._taps}"
        hint = "tap devices need root and /dev/net/tun (modprobe tun): are you root?"
        _ip("-n", self.lan_ns, "tuntap", "add", "dev", tap, "mode", "tap", hint=hint)
        _ip("-n", self.lan_ns, "link", "set", tap, "master", "br0", "up")
        return tap

    def destroy(self) -> None:
        """Delete every namespace of this run (killing what still runs inside); safe to call twice."""
        errors = []
        for ns in reversed(self._namespaces):
            try:
                delete_namespace(ns)
            except LabError as exc:
                errors.append(str(exc))
        self._namespaces.clear()
        with _live_lock:
            _live.discard(self)
        if errors:
            raise LabError("lab teardown incomplete: " + "; ".join(errors))

    def __enter__(self) -> LabNetwork:
        return self.create()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


@atexit.register
def _destroy_all() -> None:
    with _live_lock:
        networks = list(_live)
    for network in networks:
        with contextlib.suppress(LabError):
            network.destroy()
