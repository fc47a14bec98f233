"""Render Helm charts and validate every document they produce.

Used by tests/charts and (later) the gitops tests. The small API:

- ``discover_charts()``: every chart under charts/ (except the library) and gitops/, found by Chart.yaml.
- ``fixture_values(chart)``: the default values (None) plus helm's ``ci/*-values.yaml`` convention.
- ``lint_chart(chart, values_files)`` / ``render_chart(chart, values_files)``: helm lint --strict / helm template;
  both raise ``ChartError`` carrying helm's message (a values-schema violation, a library ``fail``).
- ``validate_documents(docs)``: strict Kubernetes OpenAPI validation (kubernetes-validate) for built-in kinds and
  strict openAPIV3Schema validation for the vendored CRDs (tests/schemas/crds/); returns problems, [] when valid.
- ``check_pod_security(docs)``: our own rules for every pod template (non-root, read-only root FS, drop ALL,
  seccomp, probes on long-running containers); returns problems.

A problem is a string naming the chart, the fixture, the document (Kind/name) and the field path, so a failing
test says exactly what to fix.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from homelab_common.site import K3s

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = Path(__file__).resolve().parent / "schemas" / "crds"
#: Facts about the upstream charts gitops/ pins, one folder per chart and version (see its README.md).
UPSTREAM_DIR = Path(__file__).resolve().parent / "schemas" / "upstream"
LIBRARY = REPO / "charts" / "library"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as the API server reads it: a bare ``=`` (in prometheus-operator CRDs) is the string "=", not
    PyYAML's YAML 1.1 ``value`` tag."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
_LOADER = _Loader


def load_all(text: str) -> Iterator[Any]:
    """Every document of a YAML stream (see _Loader)."""
    return yaml.load_all(text, Loader=_LOADER)


#: The Kubernetes version manifests are validated against: the minor of the site file's default k3s (what a site
#: runs unless it says otherwise), not the newest one kubernetes-validate ships.
KUBERNETES_VERSION = "{}.{}.0".format(*K3s().version.removeprefix("v").split(".")[:2])

#: Kinds whose pods run until stopped: their containers must have liveness and readiness probes.
LONG_RUNNING = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Pod"}


class ChartError(Exception):
    """helm refused the chart (lint error, values-schema violation, a library ``fail``)."""


@dataclass(frozen=True)
class Document:
    """One rendered manifest and where it came from."""

    body: dict[str, Any]
    chart: str = "?"
    fixture: str = "?"

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", "?"))

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"

    def where(self, path: str = "") -> str:
        location = f"chart {self.chart}, fixture {self.fixture}, {self.ident}"
        return f"{location}: {path}" if path else location


@dataclass
class _Crd:
    kind: str
    api_version: str
    schema: dict[str, Any]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helm


def helm() -> str:
    found = shutil.which("helm")
    if found is None:
        raise ChartError("helm is not on PATH: run ./task deps and put .cache/bin on PATH")
    return found


def _run(args: Sequence[str], what: str) -> str:
    proc = subprocess.run([helm(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = "\n".join(part.strip() for part in (proc.stdout, proc.stderr) if part.strip())
        raise ChartError(f"{what} failed:\n{output}")
    return proc.stdout


def discover_charts(root: Path = REPO) -> list[Path]:
    """Every chart under charts/ and gitops/ (found by Chart.yaml), except library charts and vendored subcharts."""
    found = []
    for base in ("charts", "gitops"):
        for chart_yaml in sorted((root / base).rglob("Chart.yaml")):
            chart = chart_yaml.parent
            if "charts" in chart.relative_to(root / base).parts[:-1]:
                continue  # an unpacked dependency inside another chart's charts/
            meta = yaml.safe_load(chart_yaml.read_text()) or {}
            if meta.get("type") == "library":
                continue
            found.append(chart)
    return found


def fixture_values(chart: Path) -> list[Path | None]:
    """The default values (None) and every ``ci/*-values.yaml`` of the chart."""
    return [None, *sorted((chart / "ci").glob("*-values.yaml"))]


def fixture_name(values_file: Path | None) -> str:
    return "default" if values_file is None else values_file.name


@functools.cache
def build_dependencies(chart: Path) -> None:
    """``helm dependency build`` once per session for charts with dependencies (offline: file:// only).

    Always rebuilt on first use in a session: a packaged library left over from an earlier run would otherwise
    render stale templates.
    """
    meta = yaml.safe_load((chart / "Chart.yaml").read_text()) or {}
    if not meta.get("dependencies"):
        return
    args = ["dependency", "build", "--skip-refresh", str(chart)]
    if not (chart / "Chart.lock").exists():
        args[1] = "update"
    _run(args, f"helm dependency build of {chart.name}")


def _values_args(values_files: Iterable[Path | None]) -> list[str]:
    args: list[str] = []
    for values_file in values_files:
        if values_file is not None:
            args += ["--values", str(values_file)]
    return args


def lint_chart(chart: Path, values_files: Iterable[Path | None] = ()) -> None:
    build_dependencies(chart)
    _run(
        ["lint", "--strict", "--quiet", str(chart), *_values_args(values_files)],
        f"helm lint --strict of {chart.name} with {_fixture_label(values_files)}",
    )


def _fixture_label(values_files: Iterable[Path | None]) -> str:
    names = [fixture_name(v) for v in values_files if v is not None]
    return ", ".join(names) if names else "default"


def render_chart(
    chart: Path,
    values_files: Iterable[Path | None] = (),
    *,
    release: str | None = None,
    namespace: str = "homelab",
) -> list[Document]:
    """``helm template`` the chart (CRDs included) and parse every non-empty document."""
    values_files = list(values_files)
    out = template_text(chart, values_files, release=release, namespace=namespace)
    return [Document(body, chart.name, _fixture_label(values_files)) for body in load_all(out) if body]


def template_text(
    chart: Path,
    values_files: Iterable[Path | None] = (),
    *,
    release: str | None = None,
    namespace: str = "homelab",
) -> str:
    """What ``helm template`` prints for the chart (CRDs included), byte for byte."""
    build_dependencies(chart)
    values_files = list(values_files)
    label = _fixture_label(values_files)
    return _run(
        [
            "template",
            release or chart.name,
            str(chart),
            "--namespace",
            namespace,
            "--kube-version",
            KUBERNETES_VERSION,
            "--include-crds",
            *_values_args(values_files),
        ],
        f"helm template of {chart.name} with {label}",
    )


# --------------------------------------------------------------------------------------- validation


def _kube_schema_dir() -> Any:
    return resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"


@functools.cache
def _kube_registry() -> Registry:
    definitions = json.loads((_kube_schema_dir() / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _kube_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """The strict validator of a built-in kind, or None when kubernetes-validate has no such top-level kind."""
    group_version = api_version.split("/")
    group = group_version[0].split(".")[0] if len(group_version) == 2 else ""
    version = group_version[-1]
    stem = f"{kind.lower()}-{group}-{version}" if group else f"{kind.lower()}-{version}"
    path = _kube_schema_dir() / f"{stem}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    gvks = schema.get("x-kubernetes-group-version-kind", [])
    expected = [(g.get("group", ""), g["version"], g["kind"]) for g in gvks]
    full_group = group_version[0] if len(group_version) == 2 else ""
    if (full_group, version, kind) not in expected:
        return None
    return jsonschema.Draft202012Validator(schema, registry=_kube_registry())


@functools.cache
def _object_meta_validator() -> jsonschema.protocols.Validator:
    ref = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=_kube_registry())


def strict_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD openAPIV3Schema as a JSON schema where unknown fields are errors.

    Like the API server's pruning, but loud: an object without ``x-kubernetes-preserve-unknown-fields`` accepts
    only its declared properties. ``nullable`` becomes a null type; embedded resources get apiVersion/kind/metadata.
    """
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-embedded-resource") and "properties" in node:
            for name in ("apiVersion", "kind"):
                node["properties"].setdefault(name, {"type": "string"})
            node["properties"].setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        is_object = node.get("type") == "object" or "properties" in node
        if is_object and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key, value in node.items():
            if key == "properties":
                for sub in value.values():
                    walk(sub)
            elif key in ("items", "additionalProperties", "not"):
                walk(value)
            # allOf/anyOf/oneOf are left alone: structural schemas declare every field at the top level and
            # branches only add constraints, so closing a branch would reject fields declared beside it.

    walk(schema)
    # apiVersion and kind are implicit at the root; metadata is validated separately (strict ObjectMeta).
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"type": "object"}
    return schema


def load_crds(paths: Iterable[Path]) -> dict[tuple[str, str], _Crd]:
    crds: dict[tuple[str, str], _Crd] = {}
    for path in paths:
        for body in load_all(path.read_text()):
            if body and body.get("kind") == "CustomResourceDefinition":
                crds.update(_crd_versions(body, path.name))
    return crds


def _crd_versions(body: dict[str, Any], source: str) -> dict[tuple[str, str], _Crd]:
    spec = body.get("spec", {})
    kind = spec.get("names", {}).get("kind", "?")
    out = {}
    for version in spec.get("versions", []):
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        if not version.get("served", True) or openapi is None:
            continue
        api_version = f"{spec['group']}/{version['name']}"
        out[(api_version, kind)] = _Crd(kind, api_version, strict_openapi(openapi), source)
    return out


def pinned_upstream_charts(root: Path = REPO) -> dict[tuple[str, str], str]:
    """(chart, version) of every upstream chart a gitops/ wrapper pins -> the wrapper's path."""
    found = {}
    for chart_yaml in sorted((root / "gitops").glob("*/*/Chart.yaml")):
        meta = yaml.safe_load(chart_yaml.read_text()) or {}
        for dep in meta.get("dependencies") or []:
            if not str(dep["repository"]).startswith("file://"):
                found[(str(dep["name"]), str(dep["version"]))] = str(chart_yaml.parent.relative_to(root))
    return found


def pinned_crd_files(root: Path = REPO) -> list[Path]:
    """The CRD files of the pinned upstream versions; a pin whose version is not vendored is an error."""
    paths = []
    for (chart, version), wrapper in pinned_upstream_charts(root).items():
        folder = UPSTREAM_DIR / chart / version
        if not (folder / "values-keys.json").is_file():
            raise ChartError(
                f"{wrapper} pins {chart} {version}, but {folder.relative_to(REPO)} is not vendored: a pin moves "
                "together with the facts and CRDs of its version (tests/schemas/upstream/README.md)"
            )
        paths += sorted((folder / "crds").glob("*.yaml"))
    return paths


@functools.cache
def vendored_crds() -> dict[tuple[str, str], _Crd]:
    """The CRDs the cluster gets, keyed by (apiVersion, kind): those of the pinned upstream chart versions
    (tests/schemas/upstream/) and the others in tests/schemas/crds/ (k3s's Traefik, Gateway API, Plans)."""
    return load_crds([*sorted(CRD_DIR.glob("*.yaml")), *pinned_crd_files()])


def is_builtin_kind(api_version: str, kind: str) -> bool:
    """Whether Kubernetes (at KUBERNETES_VERSION) serves this kind itself."""
    return _kube_validator(api_version, kind) is not None


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(vendored_crds()[(api_version, kind)].schema)


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _errors(validator: jsonschema.protocols.Validator, instance: Any, prefix: Sequence[Any] = ()) -> Iterator[str]:
    """Leaf errors as 'field.path: message'; unknown fields are named in the path itself."""
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        yield from _describe(error, [*prefix, *error.absolute_path])


def _describe(error: jsonschema.ValidationError, path: list[Any]) -> Iterator[str]:
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = set((error.schema.get("properties") or {}) if isinstance(error.schema, dict) else ())
        for extra in sorted(set(error.instance) - known):
            yield f"{_path([*path, extra])}: unknown field"
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the branch that got furthest (the usual cause); fall back to the summary.
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and list(best.absolute_path) != []:
            yield from _describe(best, [*path, *best.relative_path])
            return
    yield f"{_path(path)}: {error.message}"


def validate_documents(docs: Iterable[Document]) -> list[str]:
    """Every problem in the documents: schema violations (strict) and unknown kinds. [] when all are valid.

    CRDs rendered among the documents are honoured for the custom resources beside them.
    """
    docs = list(docs)
    local: dict[tuple[str, str], _Crd] = {}
    for doc in docs:
        if doc.kind == "CustomResourceDefinition" and doc.body.get("apiVersion") == "apiextensions.k8s.io/v1":
            local.update(_crd_versions(doc.body, doc.ident))
    problems: list[str] = []
    for doc in docs:
        problems += [doc.where(p) for p in _validate_one(doc.body, local)]
    return problems


def _validate_one(body: Any, local: dict[tuple[str, str], _Crd]) -> list[str]:
    if not isinstance(body, dict):
        return [f"(document): not a mapping but {type(body).__name__}"]
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["(document): apiVersion and kind are required"]
    crd = vendored_crds().get((api_version, kind))
    if crd is not None:
        validator = _crd_validator(api_version, kind)
    elif (api_version, kind) in local:
        validator = jsonschema.Draft7Validator(local[(api_version, kind)].schema)
    else:
        kube = _kube_validator(api_version, kind)
        if kube is None:
            return [
                f"kind: unknown kind {kind} ({api_version}): neither a Kubernetes {KUBERNETES_VERSION} kind "
                f"nor a CRD of a pinned chart or in {CRD_DIR.relative_to(REPO)}"
            ]
        return list(_errors(kube, body))
    problems = list(_errors(validator, body))
    problems += _errors(_object_meta_validator(), body.get("metadata") or {}, ["metadata"])
    return problems


# ------------------------------------------------------------------------------------ pod security


def pod_templates(doc: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, pod spec) of every pod the document describes."""
    body, kind = doc.body, doc.kind
    spec = body.get("spec") or {}
    if kind == "Pod":
        yield "spec", spec
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield "spec.jobTemplate.spec.template.spec", template.get("spec") or {}
    elif kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}


def check_pod_security(docs: Iterable[Document]) -> list[str]:
    """Our rules for every pod: non-root, seccomp RuntimeDefault, read-only root FS, no privilege escalation,
    capabilities drop ALL, and liveness + readiness probes on the containers of long-running workloads."""
    problems: list[str] = []
    for doc in docs:
        for base, pod in pod_templates(doc):
            annotations = _template_annotations(doc)
            problems += [doc.where(p) for p in _pod_problems(base, pod, doc.kind in LONG_RUNNING, annotations)]
    return problems


def _template_annotations(doc: Document) -> dict[str, str]:
    body = doc.body
    if doc.kind == "Pod":
        metadata = body.get("metadata") or {}
    elif doc.kind == "CronJob":
        job = ((body.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        metadata = (job.get("template") or {}).get("metadata") or {}
    else:
        metadata = ((body.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return metadata.get("annotations") or {}


#: The one reviewed way to run a pod as uid 0: the pod template names the reason in this annotation, and every
#: container still drops ALL and adds nothing but NET_BIND_SERVICE (uid 0 with a single capability, no_new_privs,
#: read-only root FS). A non-root process cannot get NET_BIND_SERVICE under allowPrivilegeEscalation=false (file
#: capabilities are ignored with no_new_privs), and with hostNetwork the unprivileged-port sysctl is the node's.
ROOT_REASON_ANNOTATION = "homelab.dev/runs-as-root-because"
ROOT_ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}


def _pod_problems(base: str, pod: dict[str, Any], long_running: bool, annotations: dict[str, str]) -> Iterator[str]:
    psc = pod.get("securityContext") or {}
    root_reason = (annotations.get(ROOT_REASON_ANNOTATION) or "").strip()
    if root_reason:
        yield from _root_exception_problems(base, pod)
    elif psc.get("runAsNonRoot") is not True:
        yield f"{base}.securityContext.runAsNonRoot: must be true"
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield f"{base}.securityContext.seccompProfile.type: must be RuntimeDefault"
    for field_name in ("initContainers", "containers"):
        for container in pod.get(field_name) or []:
            where = f"{base}.{field_name}[{container.get('name', '?')}]"
            csc = container.get("securityContext") or {}
            if csc.get("readOnlyRootFilesystem") is not True:
                yield f"{where}.securityContext.readOnlyRootFilesystem: must be true"
            if csc.get("allowPrivilegeEscalation") is not False:
                yield f"{where}.securityContext.allowPrivilegeEscalation: must be false"
            if csc.get("privileged"):
                yield f"{where}.securityContext.privileged: must not be true"
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                yield f"{where}.securityContext.capabilities.drop: must contain ALL"
            if not root_reason and (csc.get("runAsUser") == 0 or (csc.get("runAsNonRoot") is False)):
                yield f"{where}.securityContext: must not run as root"
            if long_running and field_name == "containers":
                for probe in ("livenessProbe", "readinessProbe"):
                    if not container.get(probe):
                        yield f"{where}.{probe}: required on a long-running container"


def _root_exception_problems(base: str, pod: dict[str, Any]) -> Iterator[str]:
    for field_name in ("initContainers", "containers"):
        for container in pod.get(field_name) or []:
            where = f"{base}.{field_name}[{container.get('name', '?')}]"
            added = set(((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
            if added - ROOT_ALLOWED_CAPABILITIES:
                yield (
                    f"{where}.securityContext.capabilities.add: a root pod ({ROOT_REASON_ANNOTATION}) may add only "
                    f"{sorted(ROOT_ALLOWED_CAPABILITIES)}, not {sorted(added - ROOT_ALLOWED_CAPABILITIES)}"
                )


def find(docs: Iterable[Document], kind: str, name: str | None = None) -> list[Document]:
    """The documents of a kind (and name), for assertions in tests."""
    return [d for d in docs if d.kind == kind and (name is None or d.name == name)]
