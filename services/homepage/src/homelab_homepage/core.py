"""Pure logic: Ingress annotations and the static list → apps; pods and endpoints → health; apps → the page.

Nothing here does I/O. Kubernetes objects arrive as plain JSON-shaped dicts (camelCase, as ``kubectl get -o json``
prints them) and are first reduced to small frozen records (``slim_*``), so the page model is cheap to rebuild
and the cache holds only what the page needs.

Annotation vocabulary (see shared/reference/conventions.md): gethomepage's ``gethomepage.dev/*`` read exactly as
gethomepage does (``enabled`` must be exactly ``"true"``; default name = the Ingress's name, group =
``Kubernetes``, href = first rule host + first path, https when the Ingress has TLS), then Hajimari's
``hajimari.io/*`` and Forecastle's ``forecastle.stakater.com/*``. The first convention that enables an Ingress
describes its card. Every key we do not know under those prefixes, and every value we cannot use, becomes a
:class:`Diagnostic` — never silently ignored.

Health (``status``):

- **up**: every endpoint (or selected pod) is Ready, and the ``siteMonitor`` probe, if any, answered ≤ 403;
- **degraded**: some but not all are Ready, or all are Ready but the probe failed, or none are Ready but the
  probe still answers (something else serves the site);
- **down**: none Ready (including zero endpoints or a missing backend Service) and no probe says otherwise,
  or no Kubernetes signal and the probe failed;
- **unknown**: no signal at all yet (no backend Service to watch, no probe, or the first probe is pending).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Status = Literal["up", "degraded", "down", "unknown"]
STATUSES: tuple[Status, ...] = ("up", "degraded", "down", "unknown")
Severity = Literal["error", "warning", "info"]

GETHOMEPAGE = "gethomepage.dev/"
HAJIMARI = "hajimari.io/"
FORECASTLE = "forecastle.stakater.com/"
CONVENTIONS = (GETHOMEPAGE, HAJIMARI, FORECASTLE)
GETHOMEPAGE_KEYS = frozenset(
    {
        "enabled",
        "name",
        "group",
        "icon",
        "description",
        "href",
        "weight",
        "app",
        "pod-selector",
        "siteMonitor",
        "ping",
        "instance",
    }
)
HAJIMARI_KEYS = frozenset(
    {"enable", "appName", "group", "icon", "instance", "url", "info", "targetBlank", "location", "statusCheckEnabled"}
)
FORECASTLE_KEYS = frozenset(
    {"expose", "appName", "group", "icon", "url", "instance", "network-restricted", "properties"}
)
DEFAULT_GROUP = "Kubernetes"
STATIC_KEYS = frozenset(
    {
        "href",
        "icon",
        "description",
        "siteMonitor",
        "weight",
        "ping",
        "widget",
        "server",
        "container",
        "target",
        "showStats",
    }
)


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    """A mistake in someone's configuration, shown on the diagnostics view, logged and counted."""

    severity: Severity
    kind: str  # unknown-key, bad-enabled, bad-value, bad-href, unknown-icon, unreachable-href, ...
    source: str  # "ingress/<ns>/<name>" or "static/<path>"
    message: str
    key: str = ""


@dataclass(frozen=True)
class HealthTarget:
    """What makes up an app's status: a Service's endpoints, or pods selected by labels."""

    namespace: str
    service: str = ""
    selector: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, op, values); op in = != in notin exists !

    @property
    def by_pods(self) -> bool:
        return not self.service


@dataclass(frozen=True)
class AppSpec:
    """One card as configured (before health)."""

    id: str
    source: str  # ingress/<ns>/<name> or static/<group>/<name>
    convention: str  # gethomepage, hajimari, forecastle, static
    name: str
    group: str
    href: str | None
    icon: str | None
    description: str
    weight: int
    site_monitor: str | None = None
    target: HealthTarget | None = None


@dataclass(frozen=True, slots=True)
class SlimIngress:
    namespace: str
    name: str
    annotations: tuple[tuple[str, str], ...]
    hosts: tuple[str, ...]
    first_path: str
    tls: bool
    backend_service: str


@dataclass(frozen=True, slots=True)
class SlimPod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    ready: bool
    counted: bool  # False for finished (Succeeded) or terminating pods


@dataclass(frozen=True, slots=True)
class SlimSlice:
    namespace: str
    service: str
    endpoints: tuple[tuple[str, bool], ...]  # (identity, ready) of endpoints not terminating


@dataclass(frozen=True, slots=True)
class SlimService:
    namespace: str
    name: str
    type: str


@dataclass(frozen=True)
class ProbeResult:
    """One probe of a URL: ``ok`` when it answered with a status ≤ 403 (gethomepage's siteMonitor rule)."""

    url: str
    ok: bool
    status_code: int | None
    latency_ms: float | None
    error: str = ""
    checked_at: float = 0.0


@dataclass(frozen=True)
class Health:
    status: Status
    reason: str
    ready: int | None = None
    total: int | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class Card:
    """An app as the page shows it; every string is user input and is escaped when rendered."""

    id: str
    name: str
    group: str
    href: str | None
    icon_url: str | None
    letter: str
    description: str
    status: Status
    reason: str
    ready: int | None
    total: int | None
    latency_ms: float | None
    site_monitor: str | None
    source: str
    convention: str
    search: str  # lower-cased text the search box matches


@dataclass(frozen=True)
class Group:
    name: str
    weight: int
    cards: tuple[Card, ...]


@dataclass(frozen=True)
class PageModel:
    generation: int
    groups: tuple[Group, ...]
    counts: Mapping[Status, int]
    diagnostics: tuple[Diagnostic, ...]
    synced: bool
    cards: tuple[Card, ...] = field(default=())


# -- slimming Kubernetes objects --------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def slim_ingress(obj: Mapping[str, Any]) -> SlimIngress:
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    hosts = tuple(str(r["host"]) for r in rules if isinstance(r, Mapping) and r.get("host"))
    first_path, backend = "/", ""
    for rule in rules:
        paths = ((rule or {}).get("http") or {}).get("paths") or []
        if paths:
            first_path = str(paths[0].get("path") or "/")
            backend = str(((paths[0].get("backend") or {}).get("service") or {}).get("name") or "")
            break
    if not backend:
        backend = str((((spec.get("defaultBackend") or {}).get("service")) or {}).get("name") or "")
    annotations = meta.get("annotations") or {}
    return SlimIngress(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        # Only the conventions' keys: others (kubectl's last-applied-configuration, a copy of the whole object,
        # ingress controllers' settings) are never read and would stay cached for every Ingress.
        annotations=tuple(sorted((str(k), str(v)) for k, v in annotations.items() if str(k).startswith(CONVENTIONS))),
        hosts=hosts,
        first_path=first_path,
        tls=bool(spec.get("tls")),
        backend_service=backend,
    )


def slim_pod(obj: Mapping[str, Any]) -> SlimPod:
    meta = _meta(obj)
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions if isinstance(c, Mapping))
    phase = status.get("phase")
    return SlimPod(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        ready=ready and phase == "Running",
        counted=phase != "Succeeded" and not meta.get("deletionTimestamp"),
    )


def slim_endpoint_slice(obj: Mapping[str, Any]) -> SlimSlice:
    """Endpoints that are not terminating, each with its readiness (a missing ``ready`` means ready, per the API)."""
    meta = _meta(obj)
    endpoints = []
    for ep in obj.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        if conditions.get("terminating") is True:
            continue
        ref = ep.get("targetRef") or {}
        identity = f"{ref.get('kind')}/{ref.get('name')}" if ref.get("name") else ",".join(ep.get("addresses") or [])
        endpoints.append((identity, conditions.get("ready") is not False))
    return SlimSlice(
        namespace=str(meta.get("namespace") or "default"),
        service=str((meta.get("labels") or {}).get("kubernetes.io/service-name", "")),
        endpoints=tuple(endpoints),
    )


def slim_service(obj: Mapping[str, Any]) -> SlimService:
    meta = _meta(obj)
    return SlimService(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        type=str((obj.get("spec") or {}).get("type") or "ClusterIP"),
    )


# -- small parsers -----------------------------------------------------------------------------------------


def check_url(value: str) -> str | None:
    """The reason ``value`` is not an http(s) URL with a host, or None. ``javascript:`` and friends never pass."""
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https://, got {value[:80]!r}"
    if not parts.hostname:
        return f"has no host: {value[:80]!r}"
    return None


_SET_EXPR = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_LABEL = re.compile(r"^[\w./-]+$")


def parse_selector(text: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """A Kubernetes label selector (``a=b,c!=d,e in (x,y),!f``); raises ValueError naming the bad term."""
    terms: list[str] = []
    depth, current = 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    result: list[tuple[str, str, tuple[str, ...]]] = []
    for raw in terms:
        term = raw.strip()
        if not term:
            raise ValueError("empty term")
        if match := _SET_EXPR.match(term):
            values = tuple(v.strip() for v in match[3].split(",") if v.strip())
            result.append((match[1], match[2], values))
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, _, value = term.partition(op)
                key, value = key.strip(), value.strip()
                if not _LABEL.match(key) or (value and not _LABEL.match(value)):
                    raise ValueError(f"bad term {term!r}")
                result.append((key, "!=" if op == "!=" else "=", (value,)))
                break
        else:
            key = term[1:].strip() if term.startswith("!") else term
            if not _LABEL.match(key):
                raise ValueError(f"bad term {term!r}")
            result.append((key, "!" if term.startswith("!") else "exists", ()))
    return tuple(result)


def selector_matches(selector: Iterable[tuple[str, str, tuple[str, ...]]], labels: Mapping[str, str]) -> bool:
    for key, op, values in selector:
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and value == values[0]:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and value in values:
            return False
        if op == "exists" and value is None:
            return False
        if op == "!" and value is not None:
            return False
    return True


def _instances(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


# -- Ingress → app -----------------------------------------------------------------------------------------


def _unknown_key(source: str, prefix: str, key: str, known: Iterable[str]) -> Diagnostic:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return Diagnostic(
        "warning", "unknown-key", source, f"unknown annotation {prefix}{key}{hint}; it is ignored", key=prefix + key
    )


def _enabled(value: str | None, source: str, key: str, diagnostics: list[Diagnostic]) -> bool:
    """gethomepage's rule: exactly "true" enables, exactly "false" disables; anything else is a visible mistake."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    diagnostics.append(
        Diagnostic(
            "error",
            "bad-enabled",
            source,
            f'{key} must be exactly "true" or "false", got {value[:40]!r}; the app is not shown',
            key=key,
        )
    )
    return False


def app_from_ingress(ingress: SlimIngress, instance_name: str = "") -> tuple[AppSpec | None, list[Diagnostic]]:
    """The card an Ingress asks for (or None), and every mistake found in its annotations."""
    source = f"ingress/{ingress.namespace}/{ingress.name}"
    diagnostics: list[Diagnostic] = []
    annotations = dict(ingress.annotations)
    conventions: dict[str, dict[str, str]] = {GETHOMEPAGE: {}, HAJIMARI: {}, FORECASTLE: {}}
    for key, value in annotations.items():
        for prefix in conventions:
            if key.startswith(prefix):
                conventions[prefix][key[len(prefix) :]] = value
    ghp, haj, fc = conventions[GETHOMEPAGE], conventions[HAJIMARI], conventions[FORECASTLE]
    # instance.<name>.<key> overrides the plain key on the instance so named (gethomepage).
    for key in list(ghp):
        if key.startswith("instance."):
            _, _, rest = key.partition(".")
            name, _, sub = rest.partition(".")
            if not sub or sub not in GETHOMEPAGE_KEYS - {"instance"}:
                diagnostics.append(_unknown_key(source, GETHOMEPAGE, key, GETHOMEPAGE_KEYS))
            elif instance_name and name == instance_name:
                ghp[sub] = ghp[key]
            del ghp[key]
    for key in ghp:
        if key.startswith("widget.") or key == "widget":
            diagnostics.append(
                Diagnostic(
                    "info",
                    "unsupported",
                    source,
                    f"{GETHOMEPAGE}{key}: widgets are not supported and are ignored",
                    key=key,
                )
            )
        elif key == "ping":
            diagnostics.append(
                Diagnostic(
                    "info",
                    "unsupported",
                    source,
                    f"{GETHOMEPAGE}ping is not supported (no ICMP); use siteMonitor",
                    key=key,
                )
            )
        elif key not in GETHOMEPAGE_KEYS:
            diagnostics.append(_unknown_key(source, GETHOMEPAGE, key, GETHOMEPAGE_KEYS))
    for prefix, values, known in ((HAJIMARI, haj, HAJIMARI_KEYS), (FORECASTLE, fc, FORECASTLE_KEYS)):
        diagnostics.extend(_unknown_key(source, prefix, key, known) for key in values if key not in known)

    if _enabled(ghp.get("enabled"), source, GETHOMEPAGE + "enabled", diagnostics):
        convention, fields = "gethomepage", _gethomepage_fields(ghp)
    elif _enabled(haj.get("enable"), source, HAJIMARI + "enable", diagnostics):
        convention, fields = "hajimari", _hajimari_fields(haj, ingress.namespace)
    elif _enabled(fc.get("expose"), source, FORECASTLE + "expose", diagnostics):
        convention, fields = "forecastle", _forecastle_fields(fc, ingress.namespace)
    else:
        return None, diagnostics

    wanted = _instances(fields.get("instance", ""))
    if wanted and instance_name not in wanted:
        return None, diagnostics

    href = fields.get("href")
    if href is None:
        if ingress.hosts:
            href = f"{'https' if ingress.tls else 'http'}://{ingress.hosts[0]}{ingress.first_path}"
        else:
            diagnostics.append(
                Diagnostic(
                    "warning",
                    "bad-href",
                    source,
                    "no href annotation and no host in the Ingress rules; the card has no link",
                )
            )
    if href is not None and (reason := check_url(href)):
        diagnostics.append(Diagnostic("error", "bad-href", source, f"href {reason}; the card has no link", key="href"))
        href = None

    weight = 0
    if "weight" in fields:
        try:
            weight = int(fields["weight"])
        except ValueError:
            diagnostics.append(
                Diagnostic(
                    "error",
                    "bad-value",
                    source,
                    f"weight must be an integer, got {fields['weight'][:40]!r}",
                    key="weight",
                )
            )

    monitor = fields.get("siteMonitor") or None
    if monitor is not None and (reason := check_url(monitor)):
        diagnostics.append(
            Diagnostic("error", "bad-value", source, f"siteMonitor {reason}; not probed", key="siteMonitor")
        )
        monitor = None

    target: HealthTarget | None = None
    if "pod-selector" in fields or "app" in fields:
        text = fields.get("pod-selector") or f"app.kubernetes.io/name={fields['app']}"
        try:
            target = HealthTarget(ingress.namespace, selector=parse_selector(text))
        except ValueError as exc:
            diagnostics.append(
                Diagnostic("error", "bad-value", source, f"pod-selector {text[:80]!r}: {exc}", key="pod-selector")
            )
    elif ingress.backend_service:
        target = HealthTarget(ingress.namespace, service=ingress.backend_service)

    spec = AppSpec(
        id=source,
        source=source,
        convention=convention,
        name=fields.get("name") or ingress.name,
        group=fields.get("group") or DEFAULT_GROUP,
        href=href,
        icon=fields.get("icon") or None,
        description=fields.get("description", ""),
        weight=weight,
        site_monitor=monitor,
        target=target,
    )
    return spec, diagnostics


def _gethomepage_fields(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k in GETHOMEPAGE_KEYS}


def _hajimari_fields(values: Mapping[str, str], namespace: str) -> dict[str, str]:
    fields = {"group": values.get("group") or namespace, "instance": values.get("instance", "")}
    mapping = {"appName": "name", "url": "href", "info": "description", "location": "weight"}
    fields |= {ours: values[theirs] for theirs, ours in mapping.items() if values.get(theirs)}
    if values.get("icon"):
        icon = values["icon"]
        fields["icon"] = icon if "://" in icon else "mdi-" + icon.removeprefix("mdi:")
    return fields


def _forecastle_fields(values: Mapping[str, str], namespace: str) -> dict[str, str]:
    fields = {"group": values.get("group") or namespace, "instance": values.get("instance", "")}
    mapping = {"appName": "name", "url": "href", "icon": "icon"}
    fields |= {ours: values[theirs] for theirs, ours in mapping.items() if values.get(theirs)}
    return fields


# -- the static list (gethomepage's services.yaml format) -------------------------------------------------


def apps_from_static(document: Any, path: str) -> tuple[list[AppSpec], list[Diagnostic]]:
    """Apps from a gethomepage ``services.yaml``: a list of ``{group: [{name: {href, icon, ...}}]}``."""
    source = f"static/{path}"
    apps: list[AppSpec] = []
    diagnostics: list[Diagnostic] = []

    def bad(where: str, message: str, kind: str = "bad-value") -> None:
        diagnostics.append(Diagnostic("error", kind, source, f"{where}: {message}"))

    if document is None:
        return apps, diagnostics
    if not isinstance(document, list):
        bad("top level", "must be a list of groups (gethomepage services.yaml format)")
        return apps, diagnostics
    for gi, group_entry in enumerate(document):
        if not isinstance(group_entry, Mapping) or len(group_entry) != 1:
            bad(f"[{gi}]", "each group must be a mapping of one group name to a list of services")
            continue
        ((group, services),) = group_entry.items()
        if not isinstance(services, list):
            bad(f"[{gi}].{group}", "must be a list of services")
            continue
        for si, service in enumerate(services):
            where = f"[{gi}].{group}[{si}]"
            if not isinstance(service, Mapping) or len(service) != 1:
                bad(where, "each service must be a mapping of one name to its fields")
                continue
            ((name, fields),) = service.items()
            fields = fields or {}
            if not isinstance(fields, Mapping):
                bad(f"{where}.{name}", "fields must be a mapping")
                continue
            for key in fields:
                if key not in STATIC_KEYS:
                    close = difflib.get_close_matches(str(key), list(STATIC_KEYS), n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    diagnostics.append(
                        Diagnostic(
                            "warning",
                            "unknown-key",
                            source,
                            f"{where}.{name}: unknown field {key!r}{hint}; it is ignored",
                            key=str(key),
                        )
                    )
            href = fields.get("href")
            if href is not None and (reason := check_url(str(href))):
                bad(f"{where}.{name}.href", f"{reason}; the card has no link", kind="bad-href")
                href = None
            monitor = fields.get("siteMonitor")
            if monitor is not None and (reason := check_url(str(monitor))):
                bad(f"{where}.{name}.siteMonitor", f"{reason}; not probed")
                monitor = None
            weight = fields.get("weight", 0)
            if isinstance(weight, bool) or not isinstance(weight, int):
                bad(f"{where}.{name}.weight", f"must be an integer, got {weight!r}")
                weight = 0
            apps.append(
                AppSpec(
                    id=f"static/{group}/{name}",
                    source=source,
                    convention="static",
                    name=str(name),
                    group=str(group),
                    href=str(href) if href else None,
                    icon=str(fields["icon"]) if fields.get("icon") else None,
                    description=str(fields.get("description") or ""),
                    weight=weight,
                    site_monitor=str(monitor) if monitor else None,
                )
            )
    return apps, diagnostics


# -- health ------------------------------------------------------------------------------------------------


@dataclass
class ClusterIndex:
    """Pods, endpoints and Services indexed for health lookups; built once per page rebuild."""

    services: dict[tuple[str, str], SlimService] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], dict[str, bool]] = field(default_factory=dict)
    pods: dict[str, list[SlimPod]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, services: Iterable[SlimService], slices: Iterable[SlimSlice], pods: Iterable[SlimPod]
    ) -> ClusterIndex:
        index = cls()
        for service in services:
            index.services[(service.namespace, service.name)] = service
        for slice_ in slices:
            merged = index.endpoints.setdefault((slice_.namespace, slice_.service), {})
            for identity, ready in slice_.endpoints:
                merged[identity] = merged.get(identity, False) or ready  # dual-stack slices name a pod twice
        for pod in pods:
            if pod.counted:
                index.pods.setdefault(pod.namespace, []).append(pod)
        return index

    def cluster_health(self, target: HealthTarget | None, synced: bool) -> Health | None:
        """Health from Kubernetes alone; None when the app has no Kubernetes signal."""
        if target is None:
            return None
        if not synced:
            return Health("unknown", "discovering the cluster")
        if target.by_pods:
            pods = [p for p in self.pods.get(target.namespace, []) if selector_matches(target.selector, dict(p.labels))]
            ready, total, what = sum(p.ready for p in pods), len(pods), "pods"
        else:
            key = (target.namespace, target.service)
            service = self.services.get(key)
            if service is None:
                return Health("down", f"Service {target.namespace}/{target.service} not found", 0, 0)
            if service.type == "ExternalName":
                return None  # no endpoints by design: only a siteMonitor can tell
            endpoints = self.endpoints.get(key, {})
            ready, total, what = sum(endpoints.values()), len(endpoints), "endpoints"
        return pods_health(ready, total, what)


def pods_health(ready: int, total: int, what: str = "pods") -> Health:
    if total == 0:
        return Health("down", f"no {what}", 0, 0)
    if ready == total:
        return Health("up", f"{ready}/{total} {what} ready", ready, total)
    if ready == 0:
        return Health("down", f"0/{total} {what} ready", ready, total)
    return Health("degraded", f"{ready}/{total} {what} ready", ready, total)


def combine(cluster: Health | None, monitor: str | None, probe: ProbeResult | None) -> Health:
    """One status from the Kubernetes view and the siteMonitor probe (see the module's docstring)."""
    if monitor is None:
        return cluster or Health("unknown", "no health check configured")
    if probe is None:
        return cluster or Health("unknown", "waiting for the first probe")
    latency = probe.latency_ms
    said = f"HTTP {probe.status_code}" if probe.status_code is not None else probe.error or "no answer"
    if cluster is None or cluster.status == "unknown":
        status: Status = "up" if probe.ok else "down"
        return Health(status, f"siteMonitor: {said}", latency_ms=latency)
    if probe.ok:
        if cluster.status == "down":
            return Health(
                "degraded", f"{cluster.reason}, but siteMonitor answers ({said})", cluster.ready, cluster.total, latency
            )
        return Health(cluster.status, cluster.reason, cluster.ready, cluster.total, latency)
    if cluster.status == "up":
        return Health(
            "degraded", f"{cluster.reason}, but siteMonitor failed: {said}", cluster.ready, cluster.total, latency
        )
    return Health(
        cluster.status, f"{cluster.reason}; siteMonitor failed: {said}", cluster.ready, cluster.total, latency
    )


# -- the page ----------------------------------------------------------------------------------------------


def search_text(*parts: str | None) -> str:
    return " ".join(p for p in parts if p).lower()


def matches(card: Card, query: str) -> bool:
    """Every whitespace-separated term of ``query`` occurs in the card's text (the same rule as the page's JS)."""
    return all(term in card.search for term in query.lower().split())


def order_groups(
    cards: Iterable[Card], weights: Mapping[str, int], app_weights: Mapping[str, int]
) -> tuple[Group, ...]:
    """Groups by weight (configured, else their lightest app's), then name; cards by weight, then name."""
    by_group: dict[str, list[Card]] = {}
    for card in cards:
        by_group.setdefault(card.group, []).append(card)
    groups = []
    for name, members in by_group.items():
        members.sort(key=lambda c: (app_weights.get(c.id, 0), c.name.lower(), c.id))
        weight = weights.get(name, min(app_weights.get(c.id, 0) for c in members))
        groups.append(Group(name, weight, tuple(members)))
    groups.sort(key=lambda g: (g.weight, g.name.lower()))
    return tuple(groups)


def filter_groups(groups: Iterable[Group], query: str) -> tuple[Group, ...]:
    if not query.strip():
        return tuple(groups)
    result = []
    for group in groups:
        cards = tuple(c for c in group.cards if matches(c, query))
        if cards:
            result.append(Group(group.name, group.weight, cards))
    return tuple(result)


def host_of(url: str | None) -> str:
    return (urlsplit(url).hostname or "") if url else ""
