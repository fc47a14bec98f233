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

from homelab_common.site import PRIVATE_SUFFIXES, Apps, SiteError, normalise_mac, parse_site

DEFAULT_ACME_TOKEN = "~/.config/homelab/cloudflare-api-token"  # noqa: S105 - where the token is, not a token


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


def _ask_optional(inp: TextIO, out: TextIO, question: str) -> str:
    out.write(f"{question} [none]: ")
    out.flush()
    line = inp.readline()
    if not line:
        raise EOFError("input ended before the wizard finished")
    return line.strip()


def _is_private(domain: str) -> bool:
    return any(domain == s or domain.endswith("." + s) for s in PRIVATE_SUFFIXES)


def _secret_ref(file: str | None, env: str | None) -> dict[str, str] | None:
    if file:
        return {"file": file}
    if env:
        return {"env": env}
    return None


def _apps_off(names: list[str]) -> dict[str, bool]:
    known = set(Apps.model_fields)
    unknown = sorted(set(names) - known)
    if unknown:
        raise SiteError(
            "answers", [("apps", f"unknown app(s) {', '.join(unknown)}; optional: {', '.join(sorted(known))}")]
        )
    return dict.fromkeys(names, False)


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
    pool = f"{net.network_address + 50}-{net.network_address + 70}"
    lb_pool = _ask(inp, out, "Free LAN address range for LoadBalancer services", pool)
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
    data: dict[str, Any] = {
        "domain": domain,
        "timezone": timezone,
        "lan": {"subnet": subnet, "gateway": gateway, "dns": [dns], "interface": interface},
        "ssh_keys": [key],
        "k3s": {"api_vip": api_vip, "lb_pool": lb_pool},
        "machines": machines,
    }
    if not _is_private(domain):
        out.write(
            f"{domain} is a public domain: certificates and exposure can use Cloudflare (tokens stay in files).\n"
        )
        email = _ask_optional(inp, out, "Email for Let's Encrypt certificates (none: an in-cluster CA)")
        if email:
            token = _ask(inp, out, "  File holding the Cloudflare API token (Zone DNS edit)", DEFAULT_ACME_TOKEN)
            data["certificates"] = {"acme": {"email": email, "token": {"file": token}}}
        tunnel = _ask_optional(inp, out, "File holding a Cloudflare Tunnel token (none: LAN only)")
        if tunnel:
            data["exposure"] = {"cloudflare_tunnel": {"token": {"file": tunnel}}}
    off = _ask_optional(inp, out, f"Optional apps to leave off ({', '.join(Apps.model_fields)}; comma-separated)")
    names = [n.strip() for n in off.split(",") if n.strip()]
    if names:
        data["apps"] = _apps_off(names)
    return data


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
    acme_token = _secret_ref(args.acme_token_file, args.acme_token_env)
    if args.acme_email or acme_token:
        data["certificates"] = {"acme": {"email": args.acme_email, "token": acme_token}}
    tunnel = _secret_ref(args.tunnel_token_file, args.tunnel_token_env)
    if tunnel:
        data["exposure"] = {"cloudflare_tunnel": {"token": tunnel}}
    if args.without:
        data["apps"] = _apps_off(args.without)
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
    parser.add_argument("--acme-email", help="Let's Encrypt via Cloudflare DNS-01 (public domain only)")
    parser.add_argument("--acme-token-file", help="file holding the Cloudflare API token")
    parser.add_argument("--acme-token-env", help="environment variable holding the Cloudflare API token")
    parser.add_argument("--tunnel-token-file", help="file holding a Cloudflare Tunnel token")
    parser.add_argument("--tunnel-token-env", help="environment variable holding a Cloudflare Tunnel token")
    parser.add_argument("--without", action="append", default=[], help="an optional app to leave off (repeat)")


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
