"""Checks over the rendered gitops/ tree that Argo CD itself would only fail at run time.

- :func:`convergence_problems`: the order Argo CD applies things in (tiers by the ApplicationSets' sync waves, then
  inside one app: hook phase, sync wave, kind), and whether every object's kind is built in or provided by a CRD
  applied strictly earlier. Apps of one tier sync at the same time, so a CRD from another app of the same tier is
  not earlier. Inside one app a CRD applied earlier is enough: Argo CD skips the dry run of a custom resource whose
  CRD is part of the same sync (``SkipDryRunOnMissingResource`` is needed only for a CRD outside the sync, which
  under the tiers is on the cluster already), and waits for the CRD to be established. Argo CD would even pull a
  CRD of the same app from a later wave forward (gitops-engine's ``adjustDeps``); the check still wants the order
  written down (a lower wave or phase), so the tree reads the way it syncs. Objects a chart renders only when their
  API is on the cluster at render time (``.Capabilities.APIVersions.Has``) and whose CRD is not on the cluster
  before the app "arrive late".
- :func:`random_problems`: values an upstream chart mints at random unless set (every Argo CD refresh would change
  them and restart what carries their checksum).
- :func:`unknown_key_problems`: wrapper values keys the upstream chart does not declare (dead or misspelled).

The upstream charts cannot be downloaded here, so what they render is taken from tests/schemas/upstream/<chart>/
<version>/ (see its README): ``crds/`` (the CRDs that version installs), ``values-keys.json`` and
``renders.yaml`` (the custom resources its templates render and the values that turn them on).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chart_harness import UPSTREAM_DIR, Document, is_builtin_kind, load_all

#: Argo CD's (gitops-engine's) apply order of kinds inside one phase and wave; other kinds come after these.
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]
PHASES = ("PreSync", "Sync", "PostSync")
#: Helm hooks as Argo CD runs them; other helm hooks (test, delete, rollback) are never applied by a sync.
HELM_HOOKS = {
    "pre-install": "PreSync",
    "pre-upgrade": "PreSync",
    "post-install": "PostSync",
    "post-upgrade": "PostSync",
}

#: Kinds k3s itself serves before anything of ours: its HelmChart controller and the CRDs of its packaged Traefik.
K3S_GROUPS = {"helm.cattle.io", "k3s.cattle.io", "traefik.io", "traefik.containo.us"}


@dataclass(frozen=True)
class Resource:
    """One object Argo CD applies, and where in the order it is."""

    app: str
    tier: str
    tier_wave: int
    api_version: str
    kind: str
    name: str
    phase: str = "Sync"
    wave: int = 0
    #: (group, kind) of each served kind this object defines, when it is a CRD
    provides: tuple[tuple[str, str], ...] = ()
    #: rendered only when its API is on the cluster at render time
    capability: bool = False
    origin: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def step(self) -> tuple[int, int, int]:
        kind_rank = KIND_ORDER.index(self.kind) if self.kind in KIND_ORDER else len(KIND_ORDER)
        return PHASES.index(self.phase), self.wave, kind_rank

    def describe(self) -> str:
        where = f"{self.tier} tier (wave {self.tier_wave}), {self.phase} phase, sync wave {self.wave}"
        return f"{self.app}: {self.kind}/{self.name} ({where}{', ' + self.origin if self.origin else ''})"


def crd_provides(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    spec = body.get("spec") or {}
    return ((str(spec.get("group")), str((spec.get("names") or {}).get("kind"))),)


def resource_of(doc: Document, app: str, tier: str, tier_wave: int) -> Resource | None:
    """The object as Argo CD orders it; None for what a sync never applies (helm test/delete hooks, Skip)."""
    body = doc.body
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    phase = "Sync"
    wave = str(annotations.get("argocd.argoproj.io/sync-wave", "0"))
    if "argocd.argoproj.io/hook" in annotations:
        hooks = [h.strip() for h in str(annotations["argocd.argoproj.io/hook"]).split(",")]
        phases = [h for h in hooks if h in PHASES]
        if not phases:
            return None
        phase = phases[0]
    elif "helm.sh/hook" in annotations:
        hooks = [h.strip() for h in str(annotations["helm.sh/hook"]).split(",")]
        phases = [HELM_HOOKS[h] for h in hooks if h in HELM_HOOKS]
        if not phases:
            return None
        phase = phases[0]
        wave = str(annotations.get("argocd.argoproj.io/sync-wave", annotations.get("helm.sh/hook-weight", "0")))
    provides = crd_provides(body) if doc.kind == "CustomResourceDefinition" else ()
    return Resource(app, tier, tier_wave, str(body.get("apiVersion")), doc.kind, doc.name, phase, int(wave), provides)


def _earlier(provider: Resource, consumer: Resource) -> bool:
    if provider.tier_wave < consumer.tier_wave:
        return True
    return provider.app == consumer.app and provider.step < consumer.step


def convergence_problems(resources: Iterable[Resource], preinstalled: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Every object whose kind is not built in nor provided strictly earlier; [] when the tree converges."""
    resources = list(resources)
    on_cluster = set(preinstalled)
    providers: dict[tuple[str, str], list[Resource]] = {}
    for res in resources:
        for provided in res.provides:
            providers.setdefault(provided, []).append(res)
    problems = []
    for res in resources:
        gk = (res.group, res.kind)
        if is_builtin_kind(res.api_version, res.kind) or gk in on_cluster or res.group in K3S_GROUPS:
            continue
        found = sorted(providers.get(gk, []), key=lambda p: (p.tier_wave, p.step))
        if not found:
            problems.append(
                f"{res.describe()}: {res.kind} ({res.api_version}) is no built-in kind and no CRD of "
                "the tree provides it"
            )
            continue
        before_app = [p for p in found if p.tier_wave < res.tier_wave]
        if res.capability:
            if not before_app:
                problems.append(
                    f"{res.describe()}: arrives late: the chart renders it only when {res.api_version}/{res.kind} "
                    f"is on the cluster, and its CRD comes only with {found[0].describe()}; the first sync leaves it "
                    "out and only a later refresh adds it"
                )
            continue
        if any(_earlier(p, res) for p in found):
            continue
        first = found[0]
        same_app = "" if first.app != res.app else " (applied after it in the same app)"
        problems.append(
            f"{res.describe()}: needs {res.kind} ({res.api_version}), whose CRD arrives only with "
            f'{first.describe()}{same_app}: the API server rejects it (no matches for kind "{res.kind}" in version '
            f'"{res.api_version}"), the sync fails and the tiers after it never start'
        )
    return problems


# ------------------------------------------------------------------------------------------- upstream model


def _split(path: str) -> list[str]:
    """``a.b["c.d"].e`` -> ['a', 'b', 'c.d', 'e'] (the notation of values-keys.json)."""
    return [m.group(1) or m.group(2) for m in re.finditer(r'\["([^"]*)"\]|([^.\[\]]+)', path)]


def lookup(values: Mapping[str, Any], path: str, default: Any) -> Any:
    node: Any = values
    for part in _split(path):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _holds(values: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    when = entry.get("when") or {}
    unless = entry.get("unless") or {}
    return all(lookup(values, p, d) for p, d in when.items()) and not any(
        lookup(values, p, d) for p, d in unless.items()
    )


def merge(base: Any, over: Any) -> Any:
    """Helm's merge of values files: maps deep-merged, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


@dataclass(frozen=True)
class Pin:
    """One upstream chart a wrapper depends on, at its pinned version."""

    chart: str
    version: str
    alias: str

    @property
    def folder(self) -> Path:
        return UPSTREAM_DIR / self.chart / self.version

    def renders(self) -> dict[str, Any]:
        path = self.folder / "renders.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.chart} {self.version}: no {path.relative_to(UPSTREAM_DIR.parent.parent.parent)}: a pin moved "
                "without the facts of its new version (see tests/schemas/upstream/README.md)"
            )
        return yaml.safe_load(path.read_text()) or {}


def pins(chart: Path) -> list[Pin]:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text()) or {}
    return [
        Pin(str(d["name"]), str(d["version"]), str(d.get("alias") or d["name"]))
        for d in meta.get("dependencies") or []
        if not str(d["repository"]).startswith("file://")
    ]


@functools.cache
def _crds(folder: Path) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(name, provided kinds) of every CRD in a folder of CRD files."""
    return [
        (body["metadata"]["name"], crd_provides(body))
        for path in sorted(folder.glob("*.yaml"))
        for body in load_all(path.read_text())
        if body and body.get("kind") == "CustomResourceDefinition"
    ]


def upstream_resources(pin: Pin, values: Mapping[str, Any], app: str, tier: str, tier_wave: int) -> list[Resource]:
    """What the pinned chart renders for these (wrapper) values that matters for convergence: CRDs and CRs."""
    own = values.get(pin.alias) or {}
    model = pin.renders()
    out = []
    if _holds(own, {"when": model.get("crds_when") or {}}):
        for name, provides in _crds(pin.folder / "crds"):
            out.append(
                Resource(
                    app,
                    tier,
                    tier_wave,
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    name,
                    provides=provides,
                    origin=f"{pin.chart} {pin.version}",
                )
            )
    for entry in model.get("resources") or []:
        if _holds(own, entry):
            out.append(
                Resource(
                    app,
                    tier,
                    tier_wave,
                    entry["apiVersion"],
                    entry["kind"],
                    f"({pin.chart})",
                    capability=bool(entry.get("capability")),
                    origin=f"{pin.chart} {pin.version} {entry['template']}",
                )
            )
    return out


def random_problems(pin: Pin, values: Mapping[str, Any], app: str) -> list[str]:
    own = values.get(pin.alias) or {}
    return [
        f"{app}: {pin.chart} {pin.version} renders a new random value on every render ({entry['what']}, "
        f"{entry['template']}): set {pin.alias}.{entry['value']} (from a Secret the bootstrap creates)"
        for entry in pin.renders().get("random") or []
        if _holds(own, entry)
    ]


# ------------------------------------------------------------------------------------------- values keys


@dataclass
class Keys:
    """The key paths a chart declares (its own and its subcharts' under their aliases)."""

    types: dict[str, str] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)

    def add(self, prefix: str, data: Mapping[str, Any]) -> None:
        join = (lambda k: f"{prefix}.{k}" if not k.startswith("[") else f"{prefix}{k}") if prefix else (lambda k: k)
        for key, kind in data.items():
            if key == "read_by_templates_not_in_defaults":
                self.read |= {join(k) for k in kind}
            else:
                self.types[join(key)] = kind

    def knows(self, path: str) -> bool:
        if path in self.types or path in self.read:
            return True
        # under a free-form map, an empty list, or a value that is null by default, any key is the user's
        parts = list(_prefixes(path))
        for prefix in parts[:-1]:
            if self.types.get(prefix) in ("open-map", "null") or (
                self.types.get(prefix) == "list" and f"{prefix}[]" not in self.types
            ):
                return True
            if prefix in self.read:
                return True
        return False


def _prefixes(path: str) -> Iterator[str]:
    """``a.b["c.d"][]`` -> a, a.b, a.b["c.d"], a.b["c.d"][]."""
    end = 0
    for match in re.finditer(r'\["[^"]*"\]|\[\]|\.?[^.\[\]]+', path):
        end = match.end()
        yield path[:end]


def chart_keys(pin: Pin) -> Keys:
    keys = Keys()
    keys.add("", json.loads((pin.folder / "values-keys.json").read_text()))
    facts = pin.folder / "facts.json"
    deps = (json.loads(facts.read_text()).get("dependencies") or []) if facts.is_file() else []
    # a dependency's condition (crds.enabled) is read by helm itself
    conditions = {c.strip() for dep in deps for c in str(dep.get("condition") or "").split(",") if c.strip()}
    sub = pin.folder / "subcharts-values-keys.json"
    if sub.is_file():
        # The subchart reads what its own defaults declare: a parent default under its alias that the subchart
        # does not declare is passed down and never read (woodpecker's server.ingress.hosts[].paths[].backend).
        for alias, data in json.loads(sub.read_text()).items():
            prefix = _key(alias)
            for name in [k for k in keys.types if k.startswith((f"{prefix}.", f"{prefix}["))]:
                if name not in conditions:
                    del keys.types[name]
            keys.add(prefix, data["keys"])
            keys.types.setdefault(f"{prefix}.enabled", "bool")
    for dep in deps:  # subcharts with a folder of their own here (kube-prometheus-stack's grafana, ...)
        folder = UPSTREAM_DIR / dep["name"] / str(dep.get("resolved_version") or dep["version"])
        if (folder / "values-keys.json").is_file():
            keys.add(_key(dep.get("alias") or dep["name"]), json.loads((folder / "values-keys.json").read_text()))
    return keys


def _key(name: str) -> str:
    return f'["{name}"]' if re.search(r'[.\[\]"\s]', name) else name


def leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every path set in values, in values-keys.json's notation (list items as ``[]``)."""
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            name = _key(str(key))
            yield from leaf_paths(
                value, f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}" if prefix else name
            )
    elif isinstance(node, list) and node:
        for item in node:
            yield from leaf_paths(item, f"{prefix}[]")
    else:
        yield prefix


def unknown_key_problems(pin: Pin, values: Mapping[str, Any], app: str, allowed: Iterable[str] = ()) -> list[str]:
    """Paths set under the chart's key that it does not declare; ``allowed``: paths (and everything under them)
    that are real all the same (free-form maps the defaults happen to fill, such as an app's config file)."""
    keys = chart_keys(pin)
    free = tuple(allowed)
    return sorted(
        {
            f"{app}: {pin.alias}.{path}: {pin.chart} {pin.version} declares no such key (dead or misspelled)"
            for path in leaf_paths(values.get(pin.alias) or {})
            if path and not keys.knows(path) and not any(path == a or path.startswith((f"{a}.", f"{a}[")) for a in free)
        }
    )
