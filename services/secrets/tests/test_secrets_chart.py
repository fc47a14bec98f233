"""charts/secrets and gitops/system/secrets: what the controller needs, and the apps' credentials declared in git,
filled by the controller, without anything Argo CD would see as drift. The chart's alerts are tested with the others
(promtool fire and quiet cases, runbook pages) in observability/tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from secrets_helpers import annotations, running, values

from chart_harness import REPO, Document, build_dependencies, find, render_chart
from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_common.settings import load_settings
from homelab_secrets import spec as ann
from homelab_secrets.settings import Settings

CHART = REPO / "charts" / "secrets"
APP = REPO / "gitops" / "system" / "secrets"
SITE_APPS = {"woodpecker": True, "registry": True, "monitoring": True, "logging": True, "homepage": True, "dns": True}


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    build_dependencies(CHART)
    return render_chart(CHART, [])


def credentials(tmp_path: Path, **apps: bool) -> list[dict[str, Any]]:
    build_dependencies(APP)
    site = tmp_path / "site-values.yaml"
    site.write_text(yaml.safe_dump({"site": {"apps": SITE_APPS | apps}}))
    return [d.body for d in render_chart(APP, [site], release="secrets", namespace="secrets") if d.kind == "Secret"]


def test_the_chart_environment_is_a_valid_configuration(docs: list[Document], monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = find(docs, "Deployment")[0].body
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HOMELAB_SECRETS_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    settings = load_settings(Settings)
    assert settings.audit
    assert settings.restart_workloads


def test_rbac_reads_and_patches_secrets_and_workloads_only(docs: list[Document]) -> None:
    cluster = find(docs, "ClusterRole")[0].body["rules"]
    granted = {
        (g, r, v) for rule in cluster for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {("", "secrets", "watch"), ("", "secrets", "patch"), ("apps", "deployments", "patch")} <= granted
    assert not any(v in ("create", "delete", "update") for g, r, v in granted if r == "secrets")
    lease = find(docs, "Role")[0].body["rules"]
    assert {v for rule in lease if "leases" in rule["resources"] for v in rule["verbs"]} == {"get", "create", "update"}


def test_credentials_follow_the_sites_apps(tmp_path: Path) -> None:
    names = {s["metadata"]["name"] for s in credentials(tmp_path)}
    assert names == {"gitea-admin", "grafana-admin", "registry-admin", "woodpecker-agent-secret"}
    fewer = {s["metadata"]["name"] for s in credentials(tmp_path, monitoring=False, woodpecker=False)}
    assert fewer == {"gitea-admin", "registry-admin"}


def test_git_declares_none_of_the_fields_the_controller_writes(tmp_path: Path) -> None:
    """Why Argo CD sees no drift: with ServerSideApply, Argo CD owns exactly the fields its manifest sets, and its
    diff compares only those. The controller writes values and status annotations; if git declared any of them,
    Argo CD would own it and revert (or flag) every write. So git must declare none of them."""
    for secret in credentials(tmp_path):
        notes = secret["metadata"]["annotations"]
        assert not set(notes) & set(ann.STATUS_KEYS), secret["metadata"]["name"]
        assert ann.MITTWALD + "regenerate" not in notes  # one-shot: removed after use, so never in git
        assert "stringData" not in secret
        declared = set(secret.get("data") or {})
        spec = ann.parse(notes)
        assert not declared & set(spec.keys), f"{secret['metadata']['name']} declares a generated key"
        assert notes["argocd.argoproj.io/sync-options"] == "Prune=false"


def test_the_declared_credentials_are_filled_as_the_apps_read_them(tmp_path: Path, kube: KubeEmulator) -> None:
    import kubernetes.client

    api = kubernetes.client.CoreV1Api(kube.api_client())
    declared = credentials(tmp_path)
    for secret in declared:
        api.create_namespaced_secret(secret["metadata"]["namespace"], secret)
    with running(kube) as controller:
        for secret in declared:
            name, namespace = secret["metadata"]["name"], secret["metadata"]["namespace"]
            wait_for(lambda n=name, ns=namespace: annotations(kube, n, ns).get(ann.STATUS) == "ok")
        patches = kube.request_count("update", "secrets")
        controller.reconciler.trigger()
        wait_for(lambda: controller.passes >= 3)
        assert kube.request_count("update", "secrets") == patches  # filled once; a rerun writes nothing
    gitea = values(kube, "gitea-admin", "gitea")
    assert gitea["username"] == b"gitea-admin"
    assert re.fullmatch(rb"[A-Za-z0-9]{32}", gitea["password"])
    grafana = values(kube, "grafana-admin", "monitoring")
    assert (grafana["admin-user"], len(grafana["admin-password"])) == (b"admin", 32)
    assert ann.parse(annotations(kube, "grafana-admin", "monitoring")).rotate_every == 720 * 3600
    registry = values(kube, "registry-admin", "registry")
    assert registry["auth"].startswith(b"admin:$2y$")  # mounted as the registry's htpasswd file
    agent = values(kube, "woodpecker-agent-secret", "woodpecker")["WOODPECKER_AGENT_SECRET"]
    assert re.fullmatch(rb"[0-9a-f]{64}", agent)


def test_what_reads_a_rotating_credential_follows_its_rotation(tmp_path: Path) -> None:
    """Each declared credential with a schedule reaches every consumer: Gitea's through its hook and Argo CD's copy
    (bootstrap/tests/test_job.py checks the copy names it back), Woodpecker's agent secret by restarting the server
    and the agent (both read it only at start), the registry's by restarting the registry."""
    declared = {s["metadata"]["name"]: ann.parse(s["metadata"]["annotations"]) for s in credentials(tmp_path)}
    gitea = declared["gitea-admin"]
    assert gitea.rotates
    assert gitea.hook == "gitea"
    assert gitea.copy_to == ("argocd/homelab-gitops-repo",)
    assert gitea.copy_keys == ("username", "password")
    assert declared["woodpecker-agent-secret"].rotates
    assert not declared["registry-admin"].rotates  # its logins outside the cluster cannot follow (README)

    def reloads(app: str, *path: str) -> str:
        node: Any = yaml.safe_load((REPO / "gitops" / app / "values.yaml").read_text())
        for part in path:
            node = node[part]
        return str(node["podAnnotations"][ann.RELOAD[0]])

    assert reloads("apps/woodpecker", "woodpecker", "server") == "woodpecker-agent-secret"
    assert reloads("apps/woodpecker", "woodpecker", "agent") == "woodpecker-agent-secret"
    assert reloads("platform/registry", "docker-registry") == "registry-admin"
