"""`task configure`: write the site file, interactively (defaults detected on the controller) or from flags (CI).

Refuses to overwrite an existing site file unless the user says yes (interactive) or passes ``--force``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import ipaddress
import json
import os
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import yaml

from homelab_common.cloudflare import DEFAULT_API_URL, CloudflareApi, CloudflareError, check_token
from homelab_common.site import PRIVATE_SUFFIXES, Apps, SecretRef, SiteError, normalise_mac, parse_site

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
    #: The files the keys came from (offered as the wizard's default, shorter to read than a key)
    ssh_key_files: list[str] = field(default_factory=list)
    #: Every IPv4 address of this machine as (interface, "address/prefix"), to pick the interface on a subnet
    addresses: list[tuple[str, str]] = field(default_factory=list)

    def interfaces_on(self, subnet: str) -> list[tuple[str, str]]:
        """(interface, address) pairs whose address is inside ``subnet``."""
        net = ipaddress.IPv4Network(subnet, strict=False)
        found = [(name, str(ipaddress.IPv4Interface(addr).ip)) for name, addr in self.addresses]
        return [(name, ip) for name, ip in found if ipaddress.IPv4Address(ip) in net]


def detect() -> Detected:
    """The interface carrying the default route, its IPv4 subnet and gateway (pyroute2), timezone, SSH keys."""
    found = Detected()
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for addr in ipr.get_addr(family=2):
                found.addresses.append(
                    (str(names.get(addr["index"])), f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
                )
            routes = ipr.get_default_routes(family=2)
            if routes:
                route = routes[0]
                found.gateway = route.get_attr("RTA_GATEWAY")
                found.interface = names.get(route.get_attr("RTA_OIF"))
                for name, addr in found.addresses:
                    if name == found.interface:
                        net = ipaddress.IPv4Interface(addr)
                        found.address, found.subnet = str(net.ip), str(net.network)
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
            found.ssh_key_files.append(f"~/.ssh/{name}")
    return found


def read_key(answer: str) -> str:
    """An SSH public key given as itself or as the path of its ``.pub`` file; ValueError says what is wrong."""
    if _looks_like_key(answer):
        return answer.strip()
    path = Path(answer).expanduser()
    if not path.is_file():
        raise ValueError("neither an SSH public key nor a file (give the key, or the path of its .pub file)")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it: {exc}") from None
    if "PRIVATE KEY" in text:
        raise ValueError("that is a private key: give the .pub file beside it (the private key never leaves here)")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines or not _looks_like_key(lines[0]):
        raise ValueError("the file holds no SSH public key (ssh-ed25519 / ssh-rsa / ecdsa-sha2-*)")
    return lines[0].strip()


def _looks_like_key(text: str) -> bool:
    return text.strip().split(" ", 1)[0] in _KEY_TYPES


_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
)
#: Stands in for answers not given yet while an earlier one is checked against the whole site model; never written
_PENDING_KEY = "ssh-ed25519 AAAAPENDING"
_PENDING_MACHINE = {"name": "pending", "mac": "02:00:00:00:00:00", "ip": "0.0.0.0"}


def _check_timezone(value: str) -> str:
    zones = zoneinfo.available_timezones()
    if zones and value not in zones:
        raise ValueError("not a known timezone (e.g. Europe/Berlin, America/New_York, Etc/UTC)")
    return value


class _Wizard:
    """Asks one question at a time and checks each answer at once, against the same site model `task up` uses:
    a wrong answer is explained and asked again on the spot, and every earlier answer is kept."""

    def __init__(self, inp: TextIO, out: TextIO) -> None:
        self.inp, self.out = inp, out
        # in the order the site file lists them; domain and timezone hold their defaults until answered
        self.data: dict[str, Any] = {
            "domain": "home.arpa",
            "timezone": "Etc/UTC",
            "lan": {},
            "ssh_keys": [],
            "k3s": {},
            "machines": [],
        }

    def say(self, text: str) -> None:
        self.out.write(text + "\n")

    def line(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            raise EOFError("input ended before the wizard finished")
        return line.strip()

    def ask(self, question: str, default: str | None, check: Callable[[str], str] | None = None) -> str:
        while True:
            answer = self.line(f"{question}" + (f" [{default}]" if default else "") + ": ") or (default or "")
            if not answer:
                self.say("  an answer is needed")
                continue
            try:
                return check(answer) if check else answer
            except ValueError as exc:
                self.say(f"  {answer!r}: {exc}")

    def optional(self, question: str, check: Callable[[str], str] | None = None) -> str:
        while True:
            answer = self.line(f"{question} [none]: ")
            try:
                return check(answer) if check and answer else answer
            except ValueError as exc:
                self.say(f"  {answer!r}: {exc}")

    def site(self, path: str, place: Callable[[dict[str, Any], str], None], *related: str) -> Callable[[str], str]:
        """A check that puts the answer where ``place`` says and validates the whole site so far; a problem
        reported for ``path`` (or for a ``related`` field the answer touches) is the answer's."""

        def check(answer: str) -> str:
            candidate = copy.deepcopy(self.data)
            place(candidate, answer)
            candidate["ssh_keys"] = candidate["ssh_keys"] or [_PENDING_KEY]
            lan = candidate["lan"]
            if "gateway" in lan and "dns" not in lan:
                lan["dns"] = [lan["gateway"]]
            candidate["machines"] = [{**_PENDING_MACHINE, **m} for m in candidate["machines"]]
            try:
                parse_site(candidate, "answers")
            except SiteError as exc:
                for where, message in exc.problems:
                    if where in (path, *related) or where.startswith((path + ".", path + "[")):
                        raise ValueError(message) from None
            value = _get(candidate, path)
            return answer if value is None else str(value if not isinstance(value, list) else value[0])

        return check


def _get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.replace("[", ".").replace("]", "").split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


def _setter(*keys: str | int, listed: bool = False, check: Callable[[str], Any] | None = None) -> Any:
    def place(data: dict[str, Any], answer: str) -> None:
        node: Any = data
        for key in keys[:-1]:
            node = node[key]
        value = check(answer) if check else answer
        node[keys[-1]] = [value] if listed else value

    return place


_ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")
_TUNNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ROUTES_TOKEN_FIELD = "exposure.cloudflare_tunnel.routes.api_token"  # noqa: S105 - a field's name


def tunnel_ids(token_file: str) -> tuple[str, str] | None:
    """(account id, tunnel id) from a tunnel token file (the token is base64 JSON ``{"a", "t", "s"}``), or None."""
    try:
        raw = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        data = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        account, tunnel = str(data["a"]), str(data["t"])
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return None
    return (account, tunnel) if _ACCOUNT_ID.match(account) and _TUNNEL_ID.match(tunnel) else None


def check_routes_token(routes: dict[str, Any], api_url: str, environ: dict[str, str] | None = None) -> str:
    """ "" when the API token in ``routes`` may publish (Zone:DNS:Edit on the zone, Cloudflare Tunnel:Edit on the
    tunnel: proven by writing, see check_token), else what is wrong, naming the missing permissions."""
    try:
        token = SecretRef.model_validate(routes["api_token"]).read(environ)
    except LookupError as exc:
        return f"{exc}: put the API token there first"
    api = CloudflareApi(token, api_url, retries=2, max_wait=10)
    try:
        found = check_token(
            api, routes["domain"], account_id=routes["account_id"], tunnel_id=routes["tunnel_id"], write_probe=True
        )
    except CloudflareError as exc:
        return f"the API token could not be checked: {exc}"
    if found.missing:
        return (
            f"the API token lacks {', '.join(found.missing)}: edit it in Cloudflare's dashboard "
            "(My Profile > API Tokens) and try again"
        )
    return ""


def _check_id(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(answer: str) -> str:
        if not pattern.match(answer.strip().lower()):
            raise ValueError(f"not a Cloudflare {what}")
        return answer.strip().lower()

    return check


def _check_public(answer: str) -> str:
    if _is_private(answer):
        raise ValueError("a private domain: Cloudflare cannot hold its zone")
    return answer.strip().lower()


def _ask_routes(w: _Wizard, domain: str, tunnel_file: str, api_url: str) -> dict[str, Any] | None:
    """The tunnel-routes block, with its token checked against Cloudflare's API; None when the user declines."""
    token_file = w.optional(
        "File holding a Cloudflare API token to publish Ingresses marked homelab.dev/public "
        "(Zone:DNS:Edit, Cloudflare Tunnel:Edit; none: add each public hostname in the dashboard)"
    )
    if not token_file:
        return None
    account, tunnel = tunnel_ids(tunnel_file) or (None, None)
    routes: dict[str, Any] = {
        "domain": w.ask("  Public domain (the Cloudflare zone)", domain, _check_public),
        "account_id": w.ask("  Cloudflare account id", account, _check_id(_ACCOUNT_ID, "account id (32 hex digits)")),
        "tunnel_id": w.ask("  Tunnel id", tunnel, _check_id(_TUNNEL_ID, "tunnel id (a UUID)")),
        "api_token": {"file": token_file},
    }

    def token_check(answer: str) -> str:
        problem = check_routes_token({**routes, "api_token": {"file": answer}}, api_url)
        if problem:
            raise ValueError(problem)
        return answer

    w.say("  checking the token against Cloudflare's API (a TXT record is created and deleted)...")
    try:
        token_check(token_file)
    except ValueError as exc:
        w.say(f"  {exc}")
        token_file = w.optional("  File holding a corrected API token (none: do not publish)", token_check)
        if not token_file:
            return None
    w.say("  the token can publish: DNS records and tunnel routes")
    return {**routes, "api_token": {"file": token_file}}


def wizard(inp: TextIO, out: TextIO, found: Detected, api_url: str = DEFAULT_API_URL) -> dict[str, Any]:
    w = _Wizard(inp, out)
    data = w.data
    w.say("homelab site configuration: press Enter to take the [default]; each answer is checked as you give it.")
    if found.subnet is None:
        w.say(
            "Nothing was detected: this machine has no IPv4 default route, so there are no defaults for the LAN. "
            "Type your LAN's subnet and router (e.g. 192.168.1.0/24 and 192.168.1.1)."
        )
    data["domain"] = w.ask(
        "DNS domain (private: home.arpa; or one you own)", "home.arpa", w.site("domain", _setter("domain"))
    )
    data["timezone"] = w.ask("Timezone", found.timezone, _check_timezone)
    lan = data["lan"]
    lan["subnet"] = w.ask("LAN subnet", found.subnet, w.site("lan.subnet", _setter("lan", "subnet", check=_check_net)))
    net = ipaddress.IPv4Network(lan["subnet"])
    detected_gateway = found.gateway if found.gateway and ipaddress.IPv4Address(found.gateway) in net else None
    lan["gateway"] = w.ask(
        "Router (gateway)",
        detected_gateway or str(net.network_address + 1),
        w.site("lan.gateway", _setter("lan", "gateway")),
    )
    lan["dns"] = [w.ask("DNS server", lan["gateway"], w.site("lan.dns", _setter("lan", "dns", listed=True)))]
    on_subnet = found.interfaces_on(lan["subnet"])
    if on_subnet:

        def interface(answer: str) -> str:
            names = [name for name, _ in on_subnet]
            if answer not in names:
                raise ValueError(f"has no address in {lan['subnet']} here (interfaces that do: {', '.join(names)})")
            return answer

        lan["interface"] = w.ask("Controller's LAN interface", on_subnet[0][0], interface)
    else:
        w.say(
            f"No interface of this machine has an address in {lan['subnet']}: the LAN interface is left for pxe to "
            "find when ./task up runs, which must be on a machine on that LAN."
        )
    default_key = next(iter(found.ssh_key_files or found.ssh_keys), None)
    key_check = w.site("ssh_keys[0]", _setter("ssh_keys", listed=True, check=read_key))
    data["ssh_keys"] = [w.ask("SSH public key for the machines (the key, or its .pub file)", default_key, key_check)]
    k3s = data["k3s"]
    k3s["api_vip"] = w.ask(
        "Free LAN address for the Kubernetes API",
        str(net.network_address + 40),
        w.site("k3s.api_vip", _setter("k3s", "api_vip")),
    )
    k3s["lb_pool"] = w.ask(
        "Free LAN address range for LoadBalancer services",
        f"{net.network_address + 50}-{net.network_address + 70}",
        w.site("k3s.lb_pool", _setter("k3s", "lb_pool"), "k3s.api_vip"),
    )
    machines: list[dict[str, str]] = data["machines"]
    w.say("Machines: the first server initialises the cluster. An empty name ends the list.")
    while True:
        n = len(machines) + 1
        i = n - 1
        name = w.line(f"Machine {n} name [{'node' + str(n) if not machines else 'done'}]: ") or (
            "node1" if not machines else ""
        )
        if not name:
            if all(m["role"] != "server" for m in machines):
                w.say("  no machine has role server: the first server initialises the cluster; add one")
                continue
            break
        try:
            w.site(f"machines[{i}].name", lambda d, a: d["machines"].append({"name": a}))(name)
        except ValueError as exc:
            w.say(f"  {name!r}: {exc}")
            continue
        machines.append({"name": name})
        machine = machines[-1]
        related = ("k3s.lb_pool", "k3s.api_vip")
        machine["mac"] = w.ask(
            f"  {name} MAC address",
            None,
            w.site(f"machines[{i}].mac", _setter("machines", i, "mac", check=normalise_mac)),
        )
        machine["ip"] = w.ask(
            f"  {name} IP address",
            _free_ip(net, data, n),
            w.site(f"machines[{i}].ip", _setter("machines", i, "ip"), *related),
        )
        machine["disk"] = w.ask(
            f"  {name} install disk", "/dev/sda", w.site(f"machines[{i}].disk", _setter("machines", i, "disk"))
        )
        machine["role"] = w.ask(
            f"  {name} role (server/agent)",
            "server" if n <= 3 else "agent",
            w.site(f"machines[{i}].role", _setter("machines", i, "role")),
        )
    if not _is_private(data["domain"]):
        w.say(
            f"{data['domain']} is a public domain: certificates and exposure can use Cloudflare (tokens stay in files)."
        )

        def email_check(answer: str) -> str:
            place = _setter("certificates", check=lambda a: {"acme": {"email": a, "token": {"file": "t"}}})
            return w.site("certificates.acme.email", place)(answer)

        email = w.optional("Email for Let's Encrypt certificates (none: an in-cluster CA)", email_check)
        if email:
            token = w.ask("  File holding the Cloudflare API token (Zone DNS edit)", DEFAULT_ACME_TOKEN)
            _mention_missing(w, token)
            data["certificates"] = {"acme": {"email": email, "token": {"file": token}}}
        tunnel = w.optional("File holding a Cloudflare Tunnel token (none: LAN only)")
        if tunnel:
            _mention_missing(w, tunnel)
            data["exposure"] = {"cloudflare_tunnel": {"token": {"file": tunnel}}}
            routes = _ask_routes(w, data["domain"], tunnel, api_url)
            if routes is not None:
                data["exposure"]["cloudflare_tunnel"]["routes"] = routes

    def apps_check(answer: str) -> str:
        try:
            _apps_off(_names(answer))
        except SiteError as exc:
            raise ValueError(exc.problems[0][1]) from None
        return answer

    off = w.optional(f"Optional apps to leave off ({', '.join(Apps.model_fields)}; comma-separated)", apps_check)
    if _names(off):
        data["apps"] = _apps_off(_names(off))
    return data


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


def _check_net(value: str) -> str:
    return str(ipaddress.IPv4Network(value, strict=False))


def _names(answer: str) -> list[str]:
    return [n.strip() for n in answer.split(",") if n.strip()]


def _free_ip(net: ipaddress.IPv4Network, data: dict[str, Any], n: int) -> str:
    """The default address for machine ``n``: .10+n, or the next one not already taken by an earlier answer."""
    taken = {m.get("ip") for m in data["machines"]} | {data["k3s"].get("api_vip")}
    candidate = net.network_address + 10 + n
    while str(candidate) in taken and candidate + 1 in net:
        candidate += 1
    return str(candidate)


def _write_line(out: TextIO, line: str) -> None:
    out.write(line + "\n")


def _pick_interface(found: Detected, subnet: str, say: Callable[[str], None]) -> str | None:
    """The interface with an address in ``subnet`` (pxe serves there), said aloud; None when there is none."""
    try:
        on_subnet = found.interfaces_on(subnet)
    except ValueError:
        return None  # not a subnet: the site check names --subnet
    if not on_subnet:
        say(
            f"configure: no interface here has an address in {subnet}: lan.interface left unset "
            "(pxe finds the interface on the subnet when ./task up runs on a machine on that LAN)"
        )
        return None
    name, address = on_subnet[0]
    say(f"configure: --interface not given: picked {name} (its address {address} is in {subnet})")
    return name


def _mention_missing(w: _Wizard, file: str) -> None:
    if not Path(file).expanduser().is_file():
        w.say(f"  {file} does not exist yet: put the token there before ./task up (it is read then, never copied).")


def from_flags(args: argparse.Namespace, found: Detected, say: Callable[[str], None] = print) -> dict[str, Any]:
    subnet = args.subnet or found.subnet
    gateway = args.gateway or found.gateway
    if subnet is None or gateway is None:
        raise SiteError("flags", [("--subnet/--gateway", "not given and not detected (no default route)")])
    keys = found.ssh_keys
    if args.ssh_key_file:
        try:
            keys = [read_key(file) for file in args.ssh_key_file]
        except ValueError as exc:
            raise SiteError("flags", [("--ssh-key-file", str(exc))]) from None
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
    if args.interface:
        data["lan"]["interface"] = args.interface
    else:
        data["lan"]["interface"] = _pick_interface(found, subnet, say)
        if data["lan"]["interface"] is None:
            del data["lan"]["interface"]
    acme_token = _secret_ref(args.acme_token_file, args.acme_token_env)
    if args.acme_email or acme_token:
        data["certificates"] = {"acme": {"email": args.acme_email, "token": acme_token}}
    tunnel = _secret_ref(args.tunnel_token_file, args.tunnel_token_env)
    if tunnel:
        data["exposure"] = {"cloudflare_tunnel": {"token": tunnel}}
        routes_token = _secret_ref(args.routes_token_file, args.routes_token_env)
        if routes_token:
            ids = tunnel_ids(args.tunnel_token_file) if args.tunnel_token_file else None
            routes = {
                "domain": args.public_domain or args.domain,
                "account_id": args.tunnel_account_id or (ids[0] if ids else ""),
                "tunnel_id": args.tunnel_id or (ids[1] if ids else ""),
                "api_token": routes_token,
            }
            parse_site({**data, "exposure": {"cloudflare_tunnel": {"token": tunnel, "routes": routes}}}, "flags")
            problem = check_routes_token(routes, args.cloudflare_api_url, dict(os.environ))
            if problem:
                raise SiteError("flags", [(ROUTES_TOKEN_FIELD, problem)])
            say("configure: the Cloudflare API token can publish DNS records and tunnel routes")
            data["exposure"]["cloudflare_tunnel"]["routes"] = routes
    if args.without:
        data["apps"] = _apps_off(args.without)
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", default="site.yaml", help="site file to write (default: site.yaml)")
    parser.add_argument("--non-interactive", action="store_true", help="take every answer from flags (CI)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing site file")
    parser.add_argument("--domain", default="home.arpa", help="DNS domain (default: home.arpa; or one you own)")
    parser.add_argument("--timezone", help="the machines' timezone (default: this machine's)")
    parser.add_argument(
        "--interface", help="the controller's LAN interface (default: the one with an address in --subnet)"
    )
    parser.add_argument("--subnet", help="the LAN, e.g. 192.168.1.0/24 (default: the default route's)")
    parser.add_argument("--gateway", help="the LAN's router (default: the default route's)")
    parser.add_argument("--dns", action="append", help="a DNS server for the machines (repeat; default: gateway)")
    parser.add_argument(
        "--ssh-key-file", action="append", default=[], help="an SSH public key (.pub) file (repeat; default: ~/.ssh's)"
    )
    parser.add_argument("--api-vip", help="a free LAN address for the Kubernetes API (default: first server's)")
    parser.add_argument("--lb-pool", help="free LAN addresses for LoadBalancer services, FIRST-LAST")
    parser.add_argument("--machine", action="append", default=[], help="name,mac,ip[,disk[,role]] (repeat)")
    parser.add_argument("--acme-email", help="Let's Encrypt via Cloudflare DNS-01 (public domain only)")
    parser.add_argument("--acme-token-file", help="file holding the Cloudflare API token")
    parser.add_argument("--acme-token-env", help="environment variable holding the Cloudflare API token")
    parser.add_argument("--tunnel-token-file", help="file holding a Cloudflare Tunnel token")
    parser.add_argument("--tunnel-token-env", help="environment variable holding a Cloudflare Tunnel token")
    parser.add_argument(
        "--routes-token-file", help="file holding a Cloudflare API token to publish Ingresses marked public"
    )
    parser.add_argument("--routes-token-env", help="environment variable holding that API token")
    parser.add_argument("--public-domain", help="the Cloudflare zone for public names (default: --domain)")
    parser.add_argument("--tunnel-account-id", help="the tunnel's account id (default: from the tunnel token)")
    parser.add_argument("--tunnel-id", help="the tunnel's id (default: from the tunnel token)")
    parser.add_argument(
        "--cloudflare-api-url",
        default=os.environ.get("HOMELAB_CLOUDFLARE_API_URL", DEFAULT_API_URL),
        help="Cloudflare's API (default: $HOMELAB_CLOUDFLARE_API_URL or the public one)",
    )
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
        api_url = getattr(args, "cloudflare_api_url", DEFAULT_API_URL)
        data = wizard(inp, out, found, api_url) if interactive else from_flags(args, found, partial(_write_line, out))
        parse_site(data, str(path))
    except SiteError as exc:
        out.write(f"configure: {exc}\n")
        return 1
    except EOFError as exc:
        out.write(f"\nconfigure: {exc}; nothing written\n")
        return 1
    except KeyboardInterrupt:
        out.write(f"\nconfigure: stopped (Ctrl-C); nothing written to {path}. Run ./task configure to start again.\n")
        out.flush()
        return 130
    header = "# The site file, written by `./task configure`. Edit freely; see site.example.yaml for every option.\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    out.write(f"configure: wrote {path}\n")
    return 0
