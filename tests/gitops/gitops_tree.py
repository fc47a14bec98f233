"""The gitops/ tree as the tests render it: per example site, with values-site.yaml generated and the remote
(upstream) dependencies stripped, since the upstream charts cannot be downloaded here (what they render comes
from tests/schemas/upstream/ instead: see gitops_checks.py)."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from gitops_checks import merge

from chart_harness import REPO, Document, load_all, template_text
from homelab_bootstrap import gitops
from homelab_bootstrap.seed import vendor_local_dependencies
from homelab_common.site import Site, load_site, parse_site

EXAMPLE = REPO / "site.example.yaml"


def public_site() -> Site:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["domain"] = "lab.example.com"
    routes = {
        "account_id": "0123456789abcdef0123456789abcdef",
        "tunnel_id": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
        "api_token": {"env": "CF_DNS_TOKEN"},
    }
    data["exposure"] = {"cloudflare_tunnel": {"token": {"env": "CF_TUNNEL_TOKEN"}, "routes": routes}}
    data["certificates"] = {"acme": {"email": "me@example.com", "token": {"file": "/etc/homelab/cf-api-token"}}}
    data["apps"] = {"woodpecker": False, "registry": False}
    email = {"to": "me@example.com", "from": "lab@example.com", "smarthost": "smtp.example.com:587"}
    data["alerting"] = {"email": email | {"username": "lab", "password": {"env": "SMTP_PASSWORD"}}}
    return parse_site(data, "public variant")


SITES: dict[str, Callable[[], Site]] = {"example": lambda: load_site(EXAMPLE), "public": public_site}


def build_tree(root: Path, site: Site, source: Path = REPO) -> Path:
    """A copy of gitops/ and charts/ under root, values generated for the site, remote dependencies stripped."""
    shutil.copytree(source / "gitops", root / "gitops")
    shutil.copytree(source / "charts", root / "charts")
    gitops.write_values(root, site)
    vendor_local_dependencies(root)
    for chart_yaml in (root / "gitops").rglob("Chart.yaml"):
        meta = yaml.safe_load(chart_yaml.read_text())
        deps = [d for d in meta.get("dependencies") or [] if str(d["repository"]).startswith("file://")]
        meta["dependencies"] = deps
        if not deps:
            del meta["dependencies"]
        chart_yaml.write_text(yaml.safe_dump(meta))
    return root


@functools.cache
def render_app(tree: Path, app: gitops.App) -> list[Document]:
    """The app's documents (rendered once per tree and session: callers must not change them)."""
    return [Document(body, app.name, gitops.VALUES_FILE) for body in _parse(first_render(tree, app))]


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> tuple[Any, ...]:
    """Parsed once per distinct output: both sites render the same megabytes of CRDs (the crds tier)."""
    return tuple(body for body in load_all(text) if body)


@functools.cache
def first_render(tree: Path, app: gitops.App) -> str:
    return render_app_text(tree, app)


def render_app_text(tree: Path, app: gitops.App) -> str:
    """A fresh ``helm template`` of the app, byte for byte."""
    chart = tree / app.path
    return template_text(chart, [chart / gitops.VALUES_FILE], release=app.name, namespace=app.namespace)


def app_values(source: Path, tree: Path, app: gitops.App) -> dict[str, Any]:
    """values.yaml then values-site.yaml, merged as Helm does (the ApplicationSets pass both)."""
    base = yaml.safe_load((source / app.path / "values.yaml").read_text()) or {}
    site = yaml.safe_load((tree / app.path / gitops.VALUES_FILE).read_text()) or {}
    return merge(base, site)
