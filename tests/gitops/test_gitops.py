"""The whole gitops/ tree rendered for the example site (and a public-domain variant), and validated.

What is validated, and what cannot be here: the upstream charts (Argo CD, cert-manager, ...) cannot be downloaded on
the development machines, so each wrapper chart is rendered with its remote dependencies stripped: our templates
(ClusterIssuers, Plans, the HelmChartConfig, cloudflared, the root ApplicationSets) and the generated values are
validated strictly (Kubernetes schemas, the vendored CRDs); the upstream charts' own output is not. Wrappers around
our own charts (file:// dependencies) render in full. Every Application the ApplicationSets would generate is built
the way Argo CD's git directory generator does and validated against Argo CD's Application CRD.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops_tree import EXAMPLE, SITES, render_app
from gitops_tree import public_site as _public_site

from chart_harness import REPO, Document, check_pod_security, render_chart, validate_documents
from homelab_bootstrap import gitops, registry
from homelab_bootstrap.seed import vendor_local_dependencies
from homelab_common.site import load_site, parse_site

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


APPS = gitops.discover_apps(REPO)


def _local_chart_missing(app: gitops.App) -> str | None:
    meta = yaml.safe_load((REPO / app.path / "Chart.yaml").read_text())
    for dep in meta.get("dependencies") or []:
        repo = str(dep["repository"])
        if repo.startswith("file://") and not (REPO / app.path / repo.removeprefix("file://")).is_dir():
            return repo
    return None


def test_the_tree_has_every_app_the_issue_names() -> None:
    names = {a.name for a in APPS}
    assert {"argocd", "cert-manager", "traefik", "kured", "system-upgrade-controller"} <= names
    assert {"monitoring", "loki", "alloy", "gitea", "registry", "cloudflared"} <= names
    assert {"woodpecker", "pxe", "autoinstall", "dns", "homepage"} <= names


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.path)
def test_app_folder_is_a_valid_namespace_and_upstream_versions_are_pinned(app: gitops.App) -> None:
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", app.name), f"{app.path}: not a namespace name"
    meta = yaml.safe_load((REPO / app.path / "Chart.yaml").read_text())
    assert meta["name"] == app.name, f"{app.path}/Chart.yaml: name must be the folder name"
    for dep in meta.get("dependencies") or []:
        repo = str(dep["repository"])
        if repo.startswith("file://"):
            continue
        assert repo.startswith(("https://", "oci://")), f"{app.path}: {dep['name']} repository {repo}"
        assert EXACT_VERSION.match(str(dep["version"])), f"{app.path}: {dep['name']} version must be exact"
        values = yaml.safe_load((REPO / app.path / "values.yaml").read_text())
        assert dep.get("alias", dep["name"]) in values, f"{app.path}/values.yaml configures no {dep['name']} key"


def _render(tree: Path, app: gitops.App) -> list[Document]:
    return render_app(tree, app)


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("app", APPS, ids=lambda a: a.path)
def test_wrapper_chart_renders_valid_manifests_for_the_site(trees: dict[str, Path], site: str, app: gitops.App) -> None:
    assert not _local_chart_missing(app), f"{app.path} wraps a chart that is not in this checkout"
    docs = _render(trees[site], app)
    helm_configs = [d for d in docs if d.kind == "HelmChartConfig"]
    problems = validate_documents(d for d in docs if d.kind != "HelmChartConfig")
    assert not problems, "\n".join(problems)
    ours = [d for d in docs if d.kind != "Deployment" or d.name != "system-upgrade-controller"]
    problems = check_pod_security(ours)
    assert not problems, "\n".join(problems)
    for doc in helm_configs:
        assert (doc.body["apiVersion"], doc.name, doc.body["metadata"]["namespace"]) == (
            "helm.cattle.io/v1",
            "traefik",
            "kube-system",
        )
        assert isinstance(yaml.safe_load(doc.body["spec"]["valuesContent"]), dict)


def test_a_service_wrapper_renders_our_chart_with_the_library_vendored(tmp_path: Path) -> None:
    """gitops/apps/<svc> → charts/<svc> → charts/library: two levels of file:// that helm alone does not build.

    charts/bootstrap stands in for a service chart, so this runs before the services' charts land.
    """
    shutil.copytree(REPO / "charts" / "library", tmp_path / "charts" / "library")
    shutil.copytree(REPO / "charts" / "bootstrap", tmp_path / "charts" / "pxe", ignore=shutil.ignore_patterns("charts"))
    meta = yaml.safe_load((tmp_path / "charts" / "pxe" / "Chart.yaml").read_text())
    (tmp_path / "charts" / "pxe" / "Chart.yaml").write_text(yaml.safe_dump(meta | {"name": "pxe"}))
    (tmp_path / "charts" / "pxe" / "Chart.lock").unlink(missing_ok=True)
    shutil.copytree(REPO / "gitops" / "apps" / "pxe", tmp_path / "gitops" / "apps" / "pxe")
    gitops.write_values(tmp_path, load_site(EXAMPLE))
    assert vendor_local_dependencies(tmp_path) == [tmp_path / "charts" / "pxe" / "charts" / "library"]
    docs = _render(tmp_path, gitops.App("apps", "pxe"))
    assert {d.kind for d in docs} >= {"Job", "ClusterRole", "ServiceAccount"}
    problems = validate_documents(docs) + check_pod_security(docs)
    assert not problems, "\n".join(problems)


def _kinds(docs: list[Document]) -> dict[str, list[Document]]:
    out: dict[str, list[Document]] = {}
    for doc in docs:
        out.setdefault(doc.kind, []).append(doc)
    return out


def test_in_cluster_ca_for_the_private_example_and_acme_dns01_for_a_public_domain(trees: dict[str, Path]) -> None:
    app = gitops.App("system", "cert-manager")
    private = _kinds(_render(trees["example"], app))
    issuers = {d.name: d.body["spec"] for d in private["ClusterIssuer"]}
    assert issuers["homelab"] == {"ca": {"secretName": "homelab-ca"}}
    assert private["Certificate"][0].body["spec"]["isCA"] is True
    public = _kinds(_render(trees["public"], app))
    (issuer,) = public["ClusterIssuer"]
    solver = issuer.body["spec"]["acme"]["solvers"][0]
    assert solver["dns01"]["cloudflare"]["apiTokenSecretRef"]["name"] == "cloudflare-api-token"
    assert solver["selector"]["dnsZones"] == ["lab.example.com"]
    assert "Certificate" not in public


def test_upgrade_plans_roll_k3s_one_node_at_a_time_to_the_site_version(trees: dict[str, Path]) -> None:
    docs = _kinds(_render(trees["example"], gitops.App("system", "system-upgrade-controller")))
    plans = {d.name: d.body["spec"] for d in docs["Plan"]}
    assert set(plans) == {"k3s-server", "k3s-agent"}
    for spec in plans.values():
        assert spec["concurrency"] == 1
        assert spec["version"] == load_site(EXAMPLE).k3s.version
    assert plans["k3s-agent"]["prepare"]["args"] == ["prepare", "k3s-server"]


def test_the_nodes_pull_endpoint_is_a_read_only_registry_on_the_push_registrys_volume(
    trees: dict[str, Path],
) -> None:
    """templates/pull.yaml: the push registry's image, its claim mounted read-only on its node, read-only mode, the
    nodes' htpasswd only, reached on every node at registry.PULL_URL (what autoinstall writes into registries.yaml)."""
    docs = _kinds(_render(trees["example"], gitops.App("platform", "registry")))
    (deployment,) = docs["Deployment"]
    (service,) = docs["Service"]
    values = yaml.safe_load((REPO / "gitops/platform/registry/values.yaml").read_text())["docker-registry"]
    pod = deployment.body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"{values['image']['repository']}:{values['image']['tag']}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert yaml.safe_load(env["REGISTRY_STORAGE_MAINTENANCE_READONLY"]) == {"enabled": True}
    assert env["REGISTRY_AUTH_HTPASSWD_PATH"] == "/auth/htpasswd"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "registry-docker-registry", "readOnly": True}
    assert volumes["htpasswd"]["secret"]["secretName"] == registry.SECRET_NAME
    assert volumes["config"]["configMap"]["name"] == "registry-docker-registry-config"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == values["securityContext"]["runAsUser"] != 0
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {"app": "docker-registry", "release": "registry"}
    assert service.body["spec"]["type"] == "NodePort"
    (port,) = service.body["spec"]["ports"]
    assert f"http://127.0.0.1:{port['nodePort']}" == registry.PULL_URL


def test_site_values_carry_the_domain_into_upstream_keys() -> None:
    site = load_site(EXAMPLE)
    values = gitops.app_values(gitops.App("platform", "gitea"), site)
    assert values["gitea"]["ingress"]["hosts"][0]["host"] == "git.home.arpa"
    assert values["site"]["certificates"]["mode"] == "ca"
    argocd = gitops.app_values(gitops.App("system", "argocd"), site)
    assert argocd["argo-cd"]["global"]["domain"] == "argocd.home.arpa"
    assert "token" not in yaml.safe_dump(gitops.app_values(gitops.App("system", "cert-manager"), _public_site()))


def test_alertmanager_receivers_deliver_what_the_site_asks_for() -> None:
    """page and ticket (values.yaml routes) get ntfy and/or e-mail; none of them without alerting (no webhook to a
    homepage route that does not exist); the SMTP password only as the mounted Secret's file."""
    monitoring = gitops.App("platform", "monitoring")
    alertmanager = gitops.app_values(monitoring, load_site(EXAMPLE))["kube-prometheus-stack"]["alertmanager"]
    assert alertmanager == {"config": {"receivers": [{"name": "null"}, {"name": "page"}, {"name": "ticket"}]}}
    data = yaml.safe_load(EXAMPLE.read_text()) | {"alerting": {"ntfy": {"topic": "homelab-x"}}}
    receivers = gitops.alertmanager_receivers(parse_site(data))
    assert [r.get("webhook_configs") for r in receivers] == [None] + 2 * [
        [{"url": gitops.NTFY_WEBHOOK, "send_resolved": True}]
    ]
    public = _public_site()
    alertmanager = gitops.app_values(monitoring, public)["kube-prometheus-stack"]["alertmanager"]
    assert alertmanager["alertmanagerSpec"] == {"secrets": ["alertmanager-smtp"]}
    page = alertmanager["config"]["receivers"][1]
    assert page["email_configs"] == [
        {
            "to": "me@example.com",
            "from": "lab@example.com",
            "smarthost": "smtp.example.com:587",
            "require_tls": True,
            "send_resolved": True,
            "auth_username": "lab",
            "auth_password_file": "/etc/alertmanager/secrets/alertmanager-smtp/password",
        }
    ]
    assert "SMTP_PASSWORD" not in yaml.safe_dump(alertmanager)


def test_provisioning_services_get_the_site_file_and_their_addresses() -> None:
    site = load_site(EXAMPLE)
    values = gitops.app_values(gitops.App("apps", "autoinstall"), site)["autoinstall"]
    assert parse_site(yaml.safe_load(values["configMaps"]["site"]["data"]["site.yaml"])) == site
    env = values["controllers"]["main"]["containers"]["main"]["env"]
    assert env["HOMELAB_AUTOINSTALL_PUBLIC_URL"] == "http://192.168.1.52:8081", "its fixed address in k3s.lb_pool"
    assert values["service"]["main"]["annotations"] == {gitops.LB_ANNOTATION: "192.168.1.52"}
    no_pool = site.model_copy(update={"k3s": site.k3s.model_copy(update={"lb_pool": None})})
    env = gitops.app_values(gitops.App("apps", "autoinstall"), no_pool)["autoinstall"]["controllers"]["main"]
    assert env["containers"]["main"]["env"]["HOMELAB_AUTOINSTALL_PUBLIC_URL"] == "http://192.168.1.11:8081"
    pxe = gitops.app_values(gitops.App("apps", "pxe"), site)["pxe"]["controllers"]["main"]["containers"]["main"]["env"]
    assert pxe == {
        "HOMELAB_PXE_LAN": "192.168.1.0/24",
        "HOMELAB_PXE_AUTOINSTALL_URL": "http://autoinstall.autoinstall.svc:8081",
    }
    no_machines = site.model_copy(update={"machines": []})
    assert not gitops.enabled(gitops.App("apps", "pxe"), no_machines)
    assert not gitops.enabled(gitops.App("apps", "autoinstall"), no_machines)


def _generate(appset: dict[str, Any], repo: Path) -> list[dict[str, Any]]:
    """Argo CD's git directory generator + goTemplate, for the paths this template uses."""
    git = appset["spec"]["generators"][0]["git"]
    include = [d["path"] for d in git["directories"] if not d.get("exclude")]
    exclude = {d["path"] for d in git["directories"] if d.get("exclude")}
    apps = []
    for pattern in include:
        for found in sorted(repo.glob(pattern)):
            path = str(found.relative_to(repo))
            if not found.is_dir() or path in exclude:
                continue
            text = yaml.safe_dump(appset["spec"]["template"])
            text = text.replace("{{ .path.basename }}", found.name).replace("{{ .path.path }}", path)
            app = yaml.safe_load(text)
            app |= {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"}
            app["metadata"]["namespace"] = appset["metadata"]["namespace"]
            apps.append(app)
    return apps


@pytest.mark.parametrize("site_name", SITES)
def test_root_applicationsets_and_every_generated_application_are_valid(site_name: str, tmp_path: Path) -> None:
    site = SITES[site_name]()
    values = gitops.root_values(REPO, site, "http://192.168.1.5:8418/homelab.git")
    root_app = gitops.root_application(values)
    values_file = tmp_path / "root.yaml"
    values_file.write_text(yaml.safe_dump(values))
    docs = render_chart(REPO / gitops.ROOT_PATH, [values_file], release="root", namespace="argocd")
    appsets = {d.name: d.body for d in docs}
    assert list(appsets) == ["apps", "crds", "platform", "system"]
    waves = {
        name: int(body["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for name, body in appsets.items()
    }
    assert waves["crds"] < waves["system"] < waves["platform"] < waves["apps"]
    generated = [a for body in appsets.values() for a in _generate(body, REPO)]
    everything = [
        Document(root_app, "root", site_name),
        *docs,
        *(Document(a, "generated", site_name) for a in generated),
    ]
    problems = validate_documents(everything)
    assert not problems, "\n".join(problems)

    names = {a["metadata"]["name"] for a in generated}
    expected = {a.name for a in APPS if gitops.enabled(a, site)}
    assert names == expected
    for app in generated:
        spec = app["spec"]
        assert spec["destination"]["namespace"] == app["metadata"]["name"]
        assert spec["source"]["path"].endswith("/" + app["metadata"]["name"])
        assert spec["source"]["repoURL"] == values["repoURL"]
        assert spec["source"]["helm"]["valueFiles"] == ["values.yaml", gitops.VALUES_FILE]
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(spec["syncPolicy"]["syncOptions"])
        assert spec["syncPolicy"]["retry"]["limit"] > 0, "apps whose CRDs come from another app retry, not fail"
        ignored = {d["kind"] for d in spec["ignoreDifferences"]}
        assert ignored == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    assert "argocd" in names, "Argo CD must manage itself"
    if site_name == "public":
        assert {"cloudflared", "dns-public"} <= names
        assert "woodpecker" not in names
    else:
        assert not {"cloudflared", "dns-public"} & names


def test_generated_values_files_are_written_once_and_rewritten_only_on_change(tmp_path: Path) -> None:
    shutil.copytree(REPO / "gitops", tmp_path / "gitops")
    site = load_site(EXAMPLE)
    first = gitops.write_values(tmp_path, site)
    assert len(first) == len(APPS)
    assert gitops.write_values(tmp_path, site) == []
    changed = gitops.write_values(tmp_path, site.model_copy(update={"timezone": "Etc/UTC"}))
    assert changed, "a site change must reach the generated values"
    assert copy.deepcopy(yaml.safe_load(first[0].read_text()))["site"]["timezone"] == "Etc/UTC"


def test_traefik_and_dns_get_fixed_addresses_from_the_pool(trees: dict[str, Path]) -> None:
    site = load_site(EXAMPLE)
    assert {k: str(v) for k, v in gitops.lb_addresses(site).items()} == {
        "traefik": "192.168.1.50",
        "dns": "192.168.1.51",
        "autoinstall": "192.168.1.52",
    }
    (config,) = _kinds(_render(trees["example"], gitops.App("system", "traefik")))["HelmChartConfig"]
    traefik = yaml.safe_load(config.body["spec"]["valuesContent"])
    assert traefik["service"]["annotations"] == {gitops.LB_ANNOTATION: "192.168.1.50"}
    services = {d.name: d.body for d in _kinds(_render(trees["example"], gitops.App("apps", "dns")))["Service"]}
    dns = next(s for s in services.values() if s["spec"].get("type") == "LoadBalancer")
    assert dns["metadata"]["annotations"][gitops.LB_ANNOTATION] == "192.168.1.51"
    small = site.model_copy(update={"k3s": site.k3s.model_copy(update={"lb_pool": "192.168.1.50-192.168.1.51"})})
    with pytest.raises(ValueError, match=r"k3s\.lb_pool: .* fewer than 3 addresses"):
        gitops.lb_addresses(small)


def test_public_dns_app_gets_zone_account_and_tunnel_never_the_token() -> None:
    site = _public_site()
    values = gitops.app_values(gitops.App("apps", "dns-public"), site)
    env = values["dns"]["controllers"]["main"]["containers"]["main"]["env"]
    assert env == {
        "HOMELAB_DNS_DOMAIN_FILTER": '["lab.example.com"]',
        "HOMELAB_DNS_CLOUDFLARE_ACCOUNT_ID": "0123456789abcdef0123456789abcdef",
        "HOMELAB_DNS_CLOUDFLARE_TUNNEL_ID": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
    }
    assert "CF_DNS_TOKEN" not in yaml.safe_dump(values)
