"""The gitops/ tree converges: sync order, deterministic renders, values keys the upstream charts read.

Each check runs on the real tree for both example sites, and on fixtures that must fail (the tree as it was before
the prometheus-operator CRDs got their own tier, a random template, dead keys), so none can pass vacuously.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops_checks import (
    Pin,
    Resource,
    chart_keys,
    convergence_problems,
    pins,
    random_problems,
    resource_of,
    unknown_key_problems,
    upstream_resources,
)
from gitops_tree import SITES, app_values, build_tree, first_render, render_app, render_app_text

from chart_harness import REPO, UPSTREAM_DIR, ChartError, pinned_crd_files, pinned_upstream_charts
from homelab_bootstrap import gitops
from homelab_common.site import Site

APPS = gitops.discover_apps(REPO)

#: Wrapper values paths (and everything under them) that are real but in neither values-keys.json list: maps the
#: chart fills with a few defaults but passes through whole, so any key of the app's own config is read.
ALLOWED_KEYS: dict[str, tuple[str, ...]] = {
    # every key of argocd-cm (the ConfigMap is rendered from this map as it is)
    "argocd": ("configs.cm",),
    # gitea's app.ini: each section of gitea.config becomes a section of the generated app.ini
    "gitea": ("gitea.config",),
    # Loki's own config file: limits_config is rendered with toYaml into loki.yaml
    "loki": ("loki.limits_config",),
    # Alertmanager's own configuration file (route, receivers, inhibit_rules), rendered with toYaml into its Secret
    "monitoring": ("alertmanager.config",),
    # the Woodpecker server's environment, one variable per key
    "woodpecker": ("server.env",),
}


def tier_waves(source: Path) -> dict[str, int]:
    tiers = yaml.safe_load((source / gitops.ROOT_PATH / "values.yaml").read_text())["tiers"]
    return {name: int(cfg["wave"]) for name, cfg in tiers.items()}


def tree_resources(source: Path, tree: Path, site: Site) -> tuple[list[Resource], set[tuple[str, str]]]:
    """Everything the enabled apps apply, in Argo CD's terms, and the kinds on the cluster before any tier: the
    CRDs of the Argo CD chart, which the bootstrap installs with helm before it creates the root app."""
    waves = tier_waves(source)
    resources: list[Resource] = []
    preinstalled: set[tuple[str, str]] = set()
    for app in gitops.discover_apps(source):
        if not gitops.enabled(app, site):
            continue
        wave = waves[app.tier]
        for doc in render_app(tree, app):
            res = resource_of(doc, app.name, app.tier, wave)
            if res is not None:
                resources.append(res)
        values = app_values(source, tree, app)
        for pin in pins(source / app.path):
            found = upstream_resources(pin, values, app.name, app.tier, wave)
            if app.name == gitops.ARGOCD_NAMESPACE:
                preinstalled |= {p for r in found for p in r.provides}
            resources += found
    return resources, preinstalled


# ------------------------------------------------------------------------------------------------ convergence


@pytest.mark.parametrize("site", SITES)
def test_every_kind_is_built_in_or_its_crd_is_applied_strictly_earlier(trees: dict[str, Path], site: str) -> None:
    resources, preinstalled = tree_resources(REPO, trees[site], SITES[site]())
    assert any(r.kind == "ServiceMonitor" and r.app == "cert-manager" for r in resources), "the model sees upstream"
    problems = convergence_problems(resources, preinstalled)
    assert not problems, "\n".join(problems)


def test_the_check_fails_on_the_tree_with_the_prometheus_crds_in_the_platform_tier(tmp_path: Path) -> None:
    """The deadlock of issue 11: ServiceMonitors in the system tier, their CRD only with platform/monitoring."""
    source = tmp_path / "source"
    (source / "gitops").mkdir(parents=True)
    for part in ("gitops/system", "gitops/platform", "gitops/root"):
        shutil.copytree(REPO / part, source / part)
    shutil.copytree(REPO / "charts", source / "charts")
    values = source / "gitops/platform/monitoring/values.yaml"
    data = yaml.safe_load(values.read_text())
    data["kube-prometheus-stack"]["crds"] = {"enabled": True}
    values.write_text(yaml.safe_dump(data))
    tiers = source / gitops.ROOT_PATH / "values.yaml"
    root = yaml.safe_load(tiers.read_text())
    root["tiers"] = {name: cfg for name, cfg in root["tiers"].items() if (source / "gitops" / name).is_dir()}
    tiers.write_text(yaml.safe_dump(root))
    site = SITES["example"]()
    tree = build_tree(tmp_path / "tree", site, source)
    problems = convergence_problems(*tree_resources(source, tree, site))
    text = "\n".join(problems)
    assert "cert-manager: ServiceMonitor/(cert-manager) (system tier" in text
    assert "kured: ServiceMonitor/(kured) (system tier" in text
    assert (
        "whose CRD arrives only with monitoring: CustomResourceDefinition/servicemonitors.monitoring.coreos.com" in text
    )
    assert "loki: ServiceMonitor/(loki) (platform tier (wave 1)" in text
    assert "arrives late" in text


def _res(app: str, tier_wave: int, kind: str, **kw: Any) -> Resource:
    api = kw.pop("api_version", "example.com/v1")
    return Resource(app, f"t{tier_wave}", tier_wave, api, kind, kw.pop("name", kind.lower()), **kw)


CRD = {"api_version": "apiextensions.k8s.io/v1", "provides": (("example.com", "Widget"),)}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("b", 1, "Widget")], None),
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("a", 0, "Widget")], None),
        ([_res("a", 0, "CustomResourceDefinition", **CRD, wave=-1), _res("a", 0, "Widget", phase="PostSync")], None),
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("b", 0, "Widget")], "arrives only with a:"),
        ([_res("a", 1, "CustomResourceDefinition", **CRD), _res("b", 0, "Widget")], "arrives only with a:"),
        (
            [_res("a", 0, "CustomResourceDefinition", **CRD, wave=2), _res("a", 0, "Widget", wave=1)],
            "(applied after it in the same app)",
        ),
        (
            [_res("a", 0, "CustomResourceDefinition", **CRD), _res("a", 0, "Widget", phase="PreSync")],
            "(applied after it in the same app)",
        ),
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("b", 0, "Widget", capability=True)], "arrives late"),
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("a", 0, "Widget", capability=True)], "arrives late"),
        ([_res("a", 0, "CustomResourceDefinition", **CRD), _res("b", 1, "Widget", capability=True)], None),
        ([_res("b", 1, "Gadget")], "no CRD of the tree provides it"),
        (
            [
                _res("b", 1, "Deployment", api_version="apps/v1"),
                _res("b", 1, "HelmChartConfig", api_version="helm.cattle.io/v1"),
            ],
            None,
        ),
    ],
)
def test_convergence_fixtures(resources: list[Resource], expected: str | None) -> None:
    problems = convergence_problems(resources)
    if expected is None:
        assert problems == []
    else:
        (problem,) = problems
        assert expected in problem


def test_argo_cd_hooks_and_waves_are_read_as_argo_cd_orders_them() -> None:
    from chart_harness import Document

    def order(annotations: dict[str, str], kind: str = "Job") -> tuple[int, int, int] | None:
        doc = Document({"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": "x", "annotations": annotations}})
        res = resource_of(doc, "a", "t", 0)
        return None if res is None else res.step

    assert order({}) == (1, 0, order({})[2])  # type: ignore[index]
    assert order({"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-5"})[:2] == (0, -5)  # type: ignore[index]
    assert order({"helm.sh/hook": "post-install"})[:2] == (2, 0)  # type: ignore[index]
    assert order({"helm.sh/hook": "test"}) is None
    assert order({"argocd.argoproj.io/hook": "Skip"}) is None
    assert order({"argocd.argoproj.io/hook": "PreSync", "argocd.argoproj.io/sync-wave": "3"})[:2] == (0, 3)  # type: ignore[index]
    assert order({}, "CustomResourceDefinition") < order({}, "Deployment")  # type: ignore[operator]


# ------------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("site", SITES)
def test_every_app_renders_byte_identical_twice_and_no_upstream_value_is_random(
    trees: dict[str, Path], site: str
) -> None:
    problems = []
    for app in APPS:
        if first_render(trees[site], app) != render_app_text(trees[site], app):
            problems.append(f"{app.path}: two renders differ (a random or time-dependent value in a template)")
        values = app_values(REPO, trees[site], app)
        for pin in pins(REPO / app.path):
            problems += random_problems(pin, values, app.name)
    assert not problems, "\n".join(problems)


def test_determinism_fixtures_fail(tmp_path: Path) -> None:
    chart = tmp_path / "gitops" / "apps" / "rnd"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: rnd\nversion: 0.1.0\n")
    (chart / "templates" / "s.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: {{ randAlphaNum 16 | quote }}}\n"
    )
    (chart / gitops.VALUES_FILE).write_text("{}\n")
    app = gitops.App("apps", "rnd")
    assert render_app_text(tmp_path, app) != render_app_text(tmp_path, app)
    registry = Pin("docker-registry", "3.0.0", "docker-registry")
    (problem,) = random_problems(registry, {"docker-registry": {"persistence": {"enabled": True}}}, "registry")
    assert "docker-registry.secrets.haSharedSecret" in problem
    assert random_problems(registry, {"docker-registry": {"secrets": {"haSharedSecret": "x"}}}, "registry") == []


# ------------------------------------------------------------------------------------------------ values keys


@pytest.mark.parametrize("site", SITES)
def test_wrapper_values_use_only_keys_the_upstream_chart_declares(trees: dict[str, Path], site: str) -> None:
    problems = []
    for app in APPS:
        values = app_values(REPO, trees[site], app)
        for pin in pins(REPO / app.path):
            problems += unknown_key_problems(pin, values, app.name, ALLOWED_KEYS.get(app.name, ()))
    assert not problems, "\n".join(problems)


def test_unknown_keys_fixtures_fail() -> None:
    woodpecker = Pin("woodpecker", "3.6.5", "woodpecker")
    dead = {"server": {"ingress": {"hosts": [{"host": "ci", "paths": [{"backend": {"serviceName": "s"}}]}]}}}
    assert unknown_key_problems(woodpecker, {"woodpecker": dead}, "woodpecker") == [
        "woodpecker: woodpecker.server.ingress.hosts[].paths[].backend.serviceName: woodpecker 3.6.5 declares no "
        "such key (dead or misspelled)"
    ]
    loki = Pin("loki", "6.16.0", "loki")
    typo = {"loki": {"limits_config": {"retention_period": "720h"}, "singleBinray": {"replicas": 1}}}
    (problem,) = unknown_key_problems(loki, {"loki": typo}, "loki", ALLOWED_KEYS["loki"])
    assert "loki.singleBinray.replicas" in problem
    # free-form maps (open-map), a subchart's keys under its alias, keys written with dots, template-only keys
    argocd = Pin("argo-cd", "7.8.20", "argo-cd")
    fine = {"configs": {"params": {"server.insecure": True}}, "redis-ha": {"enabled": False}}
    assert unknown_key_problems(argocd, {"argo-cd": fine}, "argocd") == []
    gitea = Pin("gitea", "10.4.1", "gitea")
    assert unknown_key_problems(gitea, {"gitea": {"ingress": {"apiVersion": "networking.k8s.io/v1"}}}, "gitea") == []


# ------------------------------------------------------------------------------------------------ pins and CRDs


def test_every_pinned_upstream_version_is_vendored_with_its_facts() -> None:
    for (chart, version), wrapper in pinned_upstream_charts().items():
        folder = UPSTREAM_DIR / chart / version
        for name in ("values-keys.json", "facts.json", "renders.yaml"):
            assert (folder / name).is_file(), f"{wrapper}: {chart} {version} has no {name} in {folder}"
        known = chart_keys(Pin(chart, version, chart))
        model = yaml.safe_load((folder / "renders.yaml").read_text())
        facts = yaml.safe_load((folder / "facts.json").read_text())
        assert facts["version"] == version
        crd_files = {Path(c["file"]).name for c in facts.get("crds") or []}
        assert {p.name for p in (folder / "crds").glob("*.yaml")} == crd_files
        for entry in [*(model.get("resources") or []), *(model.get("random") or []), {"when": model.get("crds_when")}]:
            for path in [*(entry.get("when") or {}), *(entry.get("unless") or {})]:
                assert known.knows(path), f"{folder}/renders.yaml: {path} is no key of {chart} {version}"


def test_a_pin_that_moves_without_its_crds_fails(tmp_path: Path) -> None:
    chart = tmp_path / "gitops" / "platform" / "monitoring"
    chart.mkdir(parents=True)
    meta = yaml.safe_load((REPO / "gitops/platform/monitoring/Chart.yaml").read_text())
    meta["dependencies"][0]["version"] = "88.5.3"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ChartError, match=r"pins kube-prometheus-stack 88\.5\.3, but .* is not vendored"):
        pinned_crd_files(tmp_path)


def test_the_crds_tier_carries_the_crds_of_the_pinned_kube_prometheus_stack_byte_for_byte() -> None:
    (pin,) = pins(REPO / "gitops/platform/monitoring")
    ours = REPO / "gitops/crds/prometheus-operator-crds/crds"
    upstream = {p.name: p.read_bytes() for p in (pin.folder / "crds").glob("*.yaml")}
    assert upstream, pin.folder
    assert {p.name: p.read_bytes() for p in ours.glob("*.yaml")} == upstream, (
        f"move {ours.relative_to(REPO)} together with the kube-prometheus-stack pin ({pin.version})"
    )
    values = yaml.safe_load((REPO / "gitops/platform/monitoring/values.yaml").read_text())
    assert values["kube-prometheus-stack"]["crds"]["enabled"] is False, "one owner per CRD"
