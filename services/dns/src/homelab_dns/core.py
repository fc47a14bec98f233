"""Records, their validation, the ownership registry and the plan: pure logic, no I/O.

The vocabulary is external-dns's, so users can move between the two without touching a record: the same
annotations, the same ownership TXT records (``a-app.example.com TXT "heritage=external-dns,..."``) and the same
three policies. A record is changed or deleted only when an ownership record with our owner id says it is ours.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ANNOTATION_PREFIXES = ("external-dns.kubernetes.io/", "external-dns.alpha.kubernetes.io/")
#: The record types this service writes (and so the only ones it may ever own).
MANAGED_TYPES = ("A", "AAAA", "CNAME", "TXT")
MAX_TTL = 2**31 - 1
HERITAGE = "heritage=external-dns"
#: Our annotation for "publish this Ingress on the Internet" (Cloudflare only ever gets what carries it).
PUBLIC_ANNOTATION = "homelab.dev/public"
#: A Cloudflare Tunnel's public name; a CNAME to it routes through the tunnel.
TUNNEL_DOMAIN = "cfargotunnel.com"
#: Cloudflare's "automatic" TTL, the only one a proxied record has.
AUTO_TTL = 1
PROXIABLE = ("A", "AAAA", "CNAME")

Policy = Literal["sync", "upsert-only", "create-only"]
RecordState = Literal["synced", "create", "update", "delete", "retained", "drift", "blocked", "foreign"]
Key = tuple[str, str]

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class InvalidRecord(ValueError):
    """One record cannot be published; the message says what to fix."""


@dataclass(frozen=True, order=True)
class Record:
    """An RRset: lowercase name without the trailing dot, type, sorted targets, TTL in seconds.

    ``proxied`` is Cloudflare's orange cloud (A, AAAA, CNAME there); None for every other provider and type.
    """

    name: str
    type: str
    targets: tuple[str, ...]
    ttl: int
    proxied: bool | None = None

    @property
    def key(self) -> Key:
        return (self.name, self.type)


@dataclass(frozen=True)
class Endpoint:
    """A record some resource wants published; ``resource`` is external-dns's ``ingress/<ns>/<name>`` form."""

    record: Record
    resource: str


@dataclass(frozen=True)
class Problem:
    """Why a resource's record was not published; ``resource`` says where to report it."""

    resource: str
    name: str
    reason: str


# -- validation ---------------------------------------------------------------------------------------------------


def normalise_name(raw: str) -> str:
    """Lowercase, without the trailing dot; raises InvalidRecord naming what is wrong with the hostname."""
    name = raw.strip().lower().rstrip(".")
    if not name:
        raise InvalidRecord("empty hostname")
    if len(name) > 253:
        raise InvalidRecord(f"hostname {raw!r} is longer than 253 characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidRecord(f"hostname {raw!r} is not fully qualified")
    for index, label in enumerate(labels):
        if label == "*" and index == 0:
            continue
        if not _LABEL.match(label):
            raise InvalidRecord(f"hostname {raw!r} has an invalid label {label!r}")
    return name


def parse_ttl(raw: str) -> int:
    """external-dns's ``ttl`` annotation: integer seconds or a Go duration (``90s``, ``1m30s``), 1 to 2^31-1 s."""
    text = raw.strip()
    if text.isdigit():
        seconds = int(text)
    elif _GO_DURATION.match(text):
        seconds = int(sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(text)))
    else:
        raise InvalidRecord(f"ttl {raw!r} is neither seconds nor a duration like 5m")
    if not 1 <= seconds <= MAX_TTL:
        raise InvalidRecord(f"ttl {raw!r} is outside 1 to {MAX_TTL} seconds")
    return seconds


def records_for_targets(name: str, targets: Iterable[str], ttl: int) -> list[Record]:
    """IPv4 targets make an A record, IPv6 an AAAA, one hostname a CNAME; a mix with a hostname is an error."""
    v4: set[str] = set()
    v6: set[str] = set()
    hosts: set[str] = set()
    for raw in targets:
        target = raw.strip()
        if not target:
            continue
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            hosts.add(normalise_name(target))
            continue
        (v4 if address.version == 4 else v6).add(str(address))
    if hosts and (v4 or v6 or len(hosts) > 1):
        raise InvalidRecord(f"{name}: a CNAME takes exactly one hostname target, got {sorted(hosts | v4 | v6)}")
    records = [Record(name, "CNAME", tuple(sorted(hosts)), ttl)] if hosts else []
    if v4:
        records.append(Record(name, "A", tuple(sorted(v4)), ttl))
    if v6:
        records.append(Record(name, "AAAA", tuple(sorted(v6)), ttl))
    return records


# -- sources: Kubernetes objects (as JSON dicts) and static records -> endpoints -------------------------------


def annotation(obj: Mapping[str, Any], key: str) -> str | None:
    """An external-dns annotation under either prefix; the current one wins when both are set."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for prefix in ANNOTATION_PREFIXES:
        value = annotations.get(prefix + key)
        if value is not None:
            return str(value)
    return None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _load_balancer_targets(obj: Mapping[str, Any]) -> list[str]:
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(item.get("ip") or item.get("hostname")) for item in ingress if item.get("ip") or item.get("hostname")]


def _resource_endpoints(
    obj: Mapping[str, Any], kind: str, hostnames: list[str], default_ttl: int
) -> tuple[list[Endpoint], list[Problem]]:
    meta = obj.get("metadata") or {}
    resource = f"{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}"
    problems: list[Problem] = []
    ttl = default_ttl
    raw_ttl = annotation(obj, "ttl")
    if raw_ttl is not None:
        try:
            ttl = parse_ttl(raw_ttl)
        except InvalidRecord as exc:
            return [], [Problem(resource, "", str(exc))]
    targets = _split(annotation(obj, "target")) or _load_balancer_targets(obj)
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for raw in hostnames:
        try:
            name = normalise_name(raw)
        except InvalidRecord as exc:
            problems.append(Problem(resource, raw, str(exc)))
            continue
        if name in seen or not targets:  # no target yet: the load balancer has not assigned one
            continue
        seen.add(name)
        try:
            endpoints.extend(Endpoint(r, resource) for r in records_for_targets(name, targets, ttl))
        except InvalidRecord as exc:
            problems.append(Problem(resource, name, str(exc)))
    return endpoints, problems


def ingress_endpoints(obj: Mapping[str, Any], default_ttl: int) -> tuple[list[Endpoint], list[Problem]]:
    """Every ``spec.rules[].host`` plus the ``hostname`` annotation, pointing at the load balancer or ``target``."""
    rules = (obj.get("spec") or {}).get("rules") or []
    hosts = [str(rule["host"]) for rule in rules if rule.get("host")]
    return _resource_endpoints(obj, "ingress", hosts + _split(annotation(obj, "hostname")), default_ttl)


def service_endpoints(obj: Mapping[str, Any], default_ttl: int) -> tuple[list[Endpoint], list[Problem]]:
    """A LoadBalancer Service is published only under the names its ``hostname`` annotation lists."""
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return [], []
    return _resource_endpoints(obj, "service", _split(annotation(obj, "hostname")), default_ttl)


def is_public(obj: Mapping[str, Any], tunnel_host: str = "") -> bool:
    """Marked ``homelab.dev/public: "true"``, or external-dns's ``target`` annotation is our tunnel."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(PUBLIC_ANNOTATION, "")).strip().lower() == "true":
        return True
    return bool(tunnel_host) and tunnel_host in [t.lower().rstrip(".") for t in _split(annotation(obj, "target"))]


def _proxied(obj: Mapping[str, Any], default: bool) -> bool:
    raw = annotation(obj, "cloudflare-proxied")
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidRecord(f"cloudflare-proxied {raw!r} is neither true nor false")
    return value == "true"


def cloudflare_endpoints(
    obj: Mapping[str, Any], kind: str, default_ttl: int, tunnel_host: str = ""
) -> tuple[list[Endpoint], list[Problem]]:
    """What Cloudflare gets from one Ingress or Service: nothing unless it is marked public.

    With a tunnel, each host of a public Ingress becomes a proxied CNAME to ``<tunnel id>.cfargotunnel.com``
    (only proxied does a tunnel CNAME work, so ``cloudflare-proxied`` is not read); Services are not routed
    through the tunnel. Without one, the usual targets, proxied as ``cloudflare-proxied`` says (default off, as
    in external-dns). A proxied record's TTL is Cloudflare's automatic one (1).
    """
    if not is_public(obj, tunnel_host):
        return [], []
    resource = _resource(obj, kind)
    if tunnel_host:
        if kind != "ingress":
            return [], []
        rules = (obj.get("spec") or {}).get("rules") or []
        names: set[str] = set()
        problems: list[Problem] = []
        for raw in [str(r["host"]) for r in rules if r.get("host")] + _split(annotation(obj, "hostname")):
            try:
                names.add(normalise_name(raw))
            except InvalidRecord as exc:
                problems.append(Problem(resource, raw, str(exc)))
        records = [Record(n, "CNAME", (tunnel_host,), AUTO_TTL, True) for n in sorted(names)]
        return [Endpoint(r, resource) for r in records], problems
    found, problems = (ingress_endpoints if kind == "ingress" else service_endpoints)(obj, default_ttl)
    try:
        proxied = _proxied(obj, False)
    except InvalidRecord as exc:
        return [], [*problems, Problem(resource, "", str(exc))]
    out = []
    for ep in found:
        rec = ep.record
        if rec.type in PROXIABLE:
            rec = Record(rec.name, rec.type, rec.targets, AUTO_TTL if proxied else rec.ttl, proxied)
        out.append(Endpoint(rec, ep.resource))
    return out, problems


def _resource(obj: Mapping[str, Any], kind: str) -> str:
    meta = obj.get("metadata") or {}
    return f"{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass(frozen=True)
class StaticRecord:
    """A record from configuration (the router, the NAS): ``type`` is inferred from targets unless given."""

    name: str
    targets: tuple[str, ...]
    ttl: int | None = None
    type: str | None = None


def static_endpoints(static: StaticRecord, default_ttl: int) -> tuple[list[Endpoint], list[Problem]]:
    resource = f"static/{static.name.strip().lower().rstrip('.')}"
    try:
        name = normalise_name(static.name)
        ttl = static.ttl if static.ttl is not None else default_ttl
        if not 1 <= ttl <= MAX_TTL:
            raise InvalidRecord(f"ttl {ttl} is outside 1 to {MAX_TTL} seconds")
        if static.type == "TXT":
            records = [Record(name, "TXT", tuple(sorted(static.targets)), ttl)]
        else:
            records = records_for_targets(name, static.targets, ttl)
            if static.type and [r.type for r in records] != [static.type]:
                raise InvalidRecord(f"{name}: targets {list(static.targets)} do not make one {static.type} record")
        if not records:
            raise InvalidRecord(f"{name}: no targets")
    except InvalidRecord as exc:
        return [], [Problem(resource, static.name, str(exc))]
    return [Endpoint(r, resource) for r in records], []


# -- desired state ------------------------------------------------------------------------------------------------


def in_domains(name: str, domains: Iterable[str]) -> bool:
    return any(name == d or name.endswith("." + d) for d in domains)


@dataclass
class Desired:
    records: dict[Key, Endpoint] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    filtered: int = 0


def desired_state(
    endpoints: Iterable[Endpoint], problems: Iterable[Problem], domains: Iterable[str], *, prefix: str = ""
) -> Desired:
    """Merge endpoints into one record per (name, type); a conflict is a problem for the losing resource only.

    Resources are taken in sorted order so the same inputs always give the same winner (several Ingresses for
    one host with the same load balancer are not a conflict: path-split apps do that).
    """
    domains = list(domains)
    out = Desired(problems=list(problems))
    by_name: dict[str, Endpoint] = {}
    for ep in sorted(endpoints, key=lambda e: (e.resource, e.record)):
        rec = ep.record
        if not in_domains(rec.name, domains):
            out.filtered += 1
            continue
        txt_name = registry_name(rec.name, rec.type, prefix)
        if len(txt_name.split(".", 1)[0]) > 63 or not in_domains(txt_name, domains):
            out.problems.append(
                Problem(ep.resource, rec.name, f"{rec.name}: its ownership record {txt_name} cannot be written")
            )
            continue
        existing = out.records.get(rec.key)
        if existing is not None:
            if existing.record != rec:
                out.problems.append(
                    Problem(ep.resource, rec.name, f"{rec.name} {rec.type} is already published by {existing.resource}")
                )
            continue
        other = by_name.get(rec.name)
        if other is not None and "CNAME" in (rec.type, other.record.type):
            out.problems.append(
                Problem(ep.resource, rec.name, f"{rec.name}: a CNAME cannot share its name ({other.resource})")
            )
            continue
        out.records[rec.key] = ep
        by_name.setdefault(rec.name, ep)
    return out


# -- the ownership registry (external-dns's TXT format) -----------------------------------------------------------


def registry_name(name: str, rtype: str, prefix: str = "") -> str:
    """``a-app.example.com`` for ``app.example.com A`` — external-dns's new-format TXT name.

    ``prefix`` is external-dns's ``--txt-prefix`` (put before the first label: ``k8s.a-app.example.com`` for
    ``k8s.``), for users who migrate with one set.
    """
    first, _, rest = name.partition(".")
    label = f"{prefix}{rtype.lower()}-{first}"
    return f"{label}.{rest}" if rest else label


def quote_txt(value: str) -> str:
    """A TXT value as RFC 1035 character strings: quoted, 255 bytes each, ``"`` and ``\\`` escaped."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def registry_value(owner: str, resource: str) -> str:
    return f"{HERITAGE},external-dns/owner={owner},external-dns/resource={resource}"


def parse_registry_value(text: str) -> dict[str, str] | None:
    """The labels of an ownership TXT value, or None when the text is not one."""
    text = text.strip().strip('"')
    parts = text.split(",")
    if not parts or parts[0] != HERITAGE:
        return None
    labels: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key.startswith("external-dns/"):
            return None
        labels[key.removeprefix("external-dns/")] = value
    return labels


def registry_key(txt_name: str, prefix: str = "") -> Key | None:
    """The (name, type) an ownership TXT name stands for, or None."""
    if not txt_name.startswith(prefix):
        return None
    first, _, rest = txt_name.removeprefix(prefix).partition(".")
    prefix, sep, label = first.partition("-")
    rtype = prefix.upper()
    if not sep or not label or rtype not in MANAGED_TYPES:
        return None
    return (f"{label}.{rest}" if rest else label, rtype)


@dataclass(frozen=True)
class Ownership:
    owner: str
    resource: str
    txt: Record


def read_registry(current: Iterable[Record], prefix: str = "") -> dict[Key, Ownership]:
    owners: dict[Key, Ownership] = {}
    for rec in current:
        if rec.type != "TXT":
            continue
        key = registry_key(rec.name, prefix)
        if key is None:
            continue
        for value in rec.targets:
            labels = parse_registry_value(value)
            if labels is not None and "owner" in labels:
                owners[key] = Ownership(labels["owner"], labels.get("resource", ""), rec)
                break
    return owners


# -- the plan -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One record as the API shows it: what we want, what is there, whose it is and what we will do."""

    name: str
    type: str
    state: RecordState
    desired: Record | None
    actual: Record | None
    owner: str | None
    resource: str | None
    reason: str = ""


@dataclass
class Plan:
    create: list[Record] = field(default_factory=list)
    update: list[tuple[Record, Record]] = field(default_factory=list)
    delete: list[Record] = field(default_factory=list)
    views: list[View] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)

    @property
    def owner_mismatches(self) -> int:
        return sum(1 for v in self.views if v.state == "blocked")

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for view in self.views:
            counts[view.state] = counts.get(view.state, 0) + 1
        return counts


def applied(current: Iterable[Record], plan: Plan) -> list[Record]:
    """What the zone holds once ``plan`` is written, without reading it back."""
    records = {r.key: r for r in current}
    for rec in plan.delete:
        records.pop(rec.key, None)
    for _, new in plan.update:
        records[new.key] = new
    for rec in plan.create:
        records[rec.key] = rec
    return list(records.values())


def make_plan(
    desired: Mapping[Key, Endpoint], current: Iterable[Record], owner: str, policy: Policy, *, prefix: str = ""
) -> Plan:
    """What to write so the zone holds the desired records, touching only records our owner id owns."""
    current = list(current)
    actual: dict[Key, Record] = {r.key: r for r in current}
    owners = read_registry(current, prefix)
    registry_records = {o.txt.key for o in owners.values()}
    names_types: dict[str, set[str]] = {}
    for rec in current:
        names_types.setdefault(rec.name, set()).add(rec.type)
    plan = Plan()

    for key, ep in sorted(desired.items()):
        want, have, own = ep.record, actual.get(key), owners.get(key)
        txt_name = registry_name(want.name, want.type, prefix)
        txt_want = Record(txt_name, "TXT", (registry_value(owner, ep.resource),), want.ttl)
        txt_have = actual.get(txt_want.key)

        def view(state: RecordState, reason: str = "", *, ep: Endpoint = ep, have: Record | None = have) -> View:
            who = owners.get(ep.record.key)
            rec = ep.record
            return View(rec.name, rec.type, state, rec, have, who.owner if who else None, ep.resource, reason)

        if own is not None and own.owner != owner:
            plan.views.append(view("blocked", f"owned by {own.owner!r}"))
            continue
        if own is None and have is not None:
            plan.views.append(view("blocked", "exists without an ownership record"))
            continue
        others = names_types.get(want.name, set()) - {want.type}
        clash = [t for t in others if (want.name, t) not in owners or owners[(want.name, t)].owner != owner]
        if clash and ("CNAME" in clash or want.type == "CNAME"):
            plan.views.append(view("blocked", f"name has {sorted(clash)} records we do not own"))
            continue
        if own is None:
            if txt_have is not None and txt_have.key not in registry_records:
                plan.views.append(view("blocked", f"{txt_want.name} TXT exists and is not an ownership record"))
                continue
            plan.create += [want, txt_want]
            plan.views.append(view("create"))
            continue
        if have is None:
            plan.create.append(want)
            if txt_have != txt_want:
                plan.update.append((own.txt, txt_want))
            plan.views.append(view("create"))
            continue
        if have == want and own.txt == txt_want:
            plan.views.append(view("synced"))
            continue
        if policy == "create-only":
            plan.views.append(view("drift", "differs; create-only does not update"))
            continue
        if have != want:
            plan.update.append((have, want))
        if own.txt != txt_want:
            plan.update.append((own.txt, txt_want))
        plan.views.append(view("update"))

    for key, own in sorted(owners.items()):
        if key in desired:
            continue
        have = actual.get(key)
        if own.owner != owner:
            if have is not None:
                plan.views.append(View(key[0], key[1], "foreign", None, have, own.owner, own.resource))
            continue
        if policy != "sync":
            plan.views.append(View(key[0], key[1], "retained", None, have, owner, own.resource, f"policy {policy}"))
            continue
        plan.delete += [r for r in (have, own.txt) if r is not None]
        plan.views.append(View(key[0], key[1], "delete", None, have, owner, own.resource))

    for key, rec in sorted(actual.items()):
        if key in desired or key in owners or key in registry_records or rec.type not in MANAGED_TYPES:
            continue
        plan.views.append(View(key[0], key[1], "foreign", None, rec, None, None))
    return plan
