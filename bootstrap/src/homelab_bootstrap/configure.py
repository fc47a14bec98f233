"""`task configure`: write the site file, interactively (defaults detected on the controller) or from flags (CI).

Refuses to overwrite an existing site file unless the user says yes (interactive) or passes ``--force``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from homelab_common.site import SiteError, normalise_mac, parse_site


@dataclass
class Detected:
    """What the controller tells us about its LAN (all optional: detection may fail, e.g. no default route)."""

    interface: str | None = None
    address: str | None = None
    subnet: str | None = None
    gateway: str | None = None
    timezone: str = "Etc/UTC"
    ssh_keys: list[str] = field(default_factory=list)


def detect() -> Detected:
    """The interface carrying the default route, its IPv4 subnet and gateway (pyroute2), timezone, SSH keys."""
    found = Detected()
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            routes = ipr.get_default_routes(family=2)
            if routes:
                route = routes[0]
                found.gateway = route.get_attr("RTA_GATEWAY")
                index = route.get_attr("RTA_OIF")
                links = ipr.get_links(index)
                if links:
                    found.interface = links[0].get_attr("IFLA_IFNAME")
                for addr in ipr.get_addr(family=2, index=index):
                    ip = addr.get_attr("IFA_ADDRESS")
                    net = ipaddress.IPv4Interface(f"{ip}/{addr['prefixlen']}")
                    found.address, found.subnet = ip, str(net.network)
                    break
    except (OSError, ImportError, ValueError):
        pass
    tz = Path("/etc/timezone")
    if tz.is_file() and tz.read_text().strip():
        found.timezone = tz.read_text().strip()
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        key = Path.home() / ".ssh" / name
        if key.is_file():
            found.ssh_keys.append(key.read_text().strip())
    return found


def _check_ip(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def _check_net(value: str) -> str:
    return str(ipaddress.IPv4Network(value, strict=False))


def _check_mac(value: str) -> str:
    return normalise_mac(value)


def _ask(
    inp: TextIO, out: TextIO, question: str, default: str | None, check: Callable[[str], str] | None = None
) -> str:
    while True:
        out.write(f"{question}" + (f" [{default}]" if default else "") + ": ")
        out.flush()
        line = inp.readline()
        if not line:
            raise EOFError("input ended before the wizard finished")
        answer = line.strip() or (default or "")
        if not answer:
            out.write("  an answer is needed\n")
            continue
        try:
            return check(answer) if check else answer
        except ValueError as exc:
            out.write(f"  {answer!r}: {exc}\n")


def wizard(inp: TextIO, out: TextIO, found: Detected) -> dict[str, Any]:
    out.write("homelab site configuration: press Enter to take the [default].\n")
    domain = _ask(inp, out, "DNS domain (private: home.arpa; or one you own)", "home.arpa")
    timezone = _ask(inp, out, "Timezone", found.timezone)
    interface = _ask(inp, out, "Controller's LAN interface", found.interface)
    subnet = _ask(inp, out, "LAN subnet", found.subnet, _check_net)
    net = ipaddress.IPv4Network(subnet)
    gateway = _ask(inp, out, "Router (gateway)", found.gateway or str(net.network_address + 1), _check_ip)
    dns = _ask(inp, out, "DNS server", gateway, _check_ip)
    key = _ask(inp, out, "SSH public key for the machines", found.ssh_keys[0] if found.ssh_keys else None)
    api_vip = _ask(inp, out, "Free LAN address for the Kubernetes API", str(net.network_address + 40), _check_ip)
    machines: list[dict[str, str]] = []
    out.write("Machines: the first server initialises the cluster. An empty name ends the list.\n")
    while True:
        n = len(machines) + 1
        out.write(f"Machine {n} name [{'node' + str(n) if not machines else 'done'}]: ")
        out.flush()
        line = inp.readline()
        if not line:
            raise EOFError("input ended before the wizard finished")
        name = line.strip() or ("node1" if not machines else "")
        if not name:
            break
        mac = _ask(inp, out, f"  {name} MAC address", None, _check_mac)
        ip = _ask(inp, out, f"  {name} IP address", str(net.network_address + 10 + n), _check_ip)
        disk = _ask(inp, out, f"  {name} install disk", "/dev/sda")
        role = _ask(inp, out, f"  {name} role (server/agent)", "server" if n <= 3 else "agent")
        machines.append({"name": name, "mac": mac, "ip": ip, "disk": disk, "role": role})
    return {
        "domain": domain,
        "timezone": timezone,
        "lan": {"subnet": subnet, "gateway": gateway, "dns": [dns], "interface": interface},
        "ssh_keys": [key],
        "k3s": {"api_vip": api_vip},
        "machines": machines,
    }


def from_flags(args: argparse.Namespace, found: Detected) -> dict[str, Any]:
    subnet = args.subnet or found.subnet
    gateway = args.gateway or found.gateway
    if subnet is None or gateway is None:
        raise SiteError("flags", [("--subnet/--gateway", "not given and not detected (no default route)")])
    keys = [Path(p).expanduser().read_text().strip() for p in args.ssh_key_file] or found.ssh_keys
    machines = []
    for spec in args.machine:
        parts = spec.split(",")
        if len(parts) < 3:
            raise SiteError("flags", [("--machine", f"{spec!r}: give name,mac,ip[,disk[,role]]")])
        machine = dict(zip(("name", "mac", "ip", "disk", "role"), parts, strict=False))
        machines.append(machine)
    data: dict[str, Any] = {
        "domain": args.domain,
        "timezone": args.timezone or found.timezone,
        "lan": {"subnet": subnet, "gateway": gateway, "dns": args.dns or [gateway]},
        "ssh_keys": keys,
        "k3s": {k: v for k, v in (("api_vip", args.api_vip), ("lb_pool", args.lb_pool)) if v},
        "machines": machines,
    }
    if args.interface or found.interface:
        data["lan"]["interface"] = args.interface or found.interface
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", default="site.yaml", help="site file to write (default: site.yaml)")
    parser.add_argument("--non-interactive", action="store_true", help="take every answer from flags (CI)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing site file")
    parser.add_argument("--domain", default="home.arpa")
    parser.add_argument("--timezone")
    parser.add_argument("--interface")
    parser.add_argument("--subnet")
    parser.add_argument("--gateway")
    parser.add_argument("--dns", action="append")
    parser.add_argument("--ssh-key-file", action="append", default=[])
    parser.add_argument("--api-vip")
    parser.add_argument("--lb-pool")
    parser.add_argument("--machine", action="append", default=[], help="name,mac,ip[,disk[,role]] (repeat)")


def configure(
    args: argparse.Namespace, inp: TextIO, out: TextIO, found: Detected | None = None, interactive: bool | None = None
) -> int:
    path = Path(args.site)
    interactive = (not args.non_interactive) if interactive is None else interactive
    found = found or detect()
    if path.exists() and not args.force:
        if not interactive:
            out.write(f"configure: {path} exists; pass --force to overwrite it\n")
            return 1
        out.write(f"{path} exists. Overwrite it? [y/N]: ")
        out.flush()
        if inp.readline().strip().lower() not in ("y", "yes"):
            out.write("configure: left the existing site file unchanged\n")
            return 1
    try:
        data = wizard(inp, out, found) if interactive else from_flags(args, found)
        parse_site(data, str(path))
    except SiteError as exc:
        out.write(f"configure: {exc}\n")
        return 1
    except EOFError as exc:
        out.write(f"\nconfigure: {exc}; nothing written\n")
        return 1
    header = "# The site file, written by `./task configure`. Edit freely; see site.example.yaml for every option.\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    out.write(f"configure: wrote {path}\n")
    return 0
