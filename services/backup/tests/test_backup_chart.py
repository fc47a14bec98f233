"""charts/backup renders a valid configuration and the RBAC the controller needs. Its alerts are tested with the
others (promtool fire and quiet cases, runbook pages) in observability/tests."""

from __future__ import annotations

from typing import Any

import pytest

from chart_harness import REPO, Document, build_dependencies, find, render_chart
from homelab_backup.settings import Settings
from homelab_common.settings import load_settings

CHART = REPO / "charts" / "backup"


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    build_dependencies(CHART)
    return render_chart(CHART, [])


def test_the_charts_environment_is_a_valid_configuration(docs: list[Document], monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = find(docs, "Deployment")[0].body
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HOMELAB_BACKUP_REPOSITORIES"]["valueFrom"]["secretKeyRef"] == {
        "name": "homelab-backup-repositories",
        "key": "repositories.json",
    }
    assert env["HOMELAB_BACKUP_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    settings = load_settings(Settings)
    assert settings.keep.daily == 7
    assert settings.check_subset == "5%"


def test_rbac_lets_the_controller_watch_create_jobs_and_lead(docs: list[Document]) -> None:
    granted = grants(role(docs, "ClusterRole", "backup"))
    assert {("", "persistentvolumeclaims", "watch"), ("", "pods", "watch"), ("", "namespaces", "watch")} <= granted
    assert ("", "nodes", "watch") in granted  # k3s server nodes: a datastore Job on each
    assert {("batch", "jobs", "create"), ("", "secrets", "create"), ("events.k8s.io", "events", "create")} <= granted
    assert ("batch", "jobs", "delete") not in granted
    lease = role(docs, "Role", "backup-leases")["rules"]
    assert {v for rule in lease if "leases" in rule["resources"] for v in rule["verbs"]} == {"get", "create", "update"}


def role(docs: list[Document], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d.body for d in find(docs, kind) if d.body["metadata"]["name"] == name]
    return found


def grants(found: dict[str, Any]) -> set[tuple[str, str, str]]:
    rules = found["rules"]
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_dump_jobs_may_exec_only_where_the_controller_binds_them(
    docs: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_role = role(docs, "ClusterRole", "backup-exec")
    assert grants(exec_role) == {("", "pods", "list"), ("", "pods/exec", "create"), ("", "pods/exec", "get")}
    bound = {d.body["roleRef"]["name"] for kind in ("ClusterRoleBinding", "RoleBinding") for d in find(docs, kind)}
    assert "backup-exec" not in bound  # never cluster-wide: the controller binds it namespace by namespace
    (account,) = [d.body for d in find(docs, "ServiceAccount") if d.body["metadata"]["name"] == "backup-exec"]
    assert account["automountServiceAccountToken"] is False  # only the dump Jobs' pods mount its token
    rules = role(docs, "ClusterRole", "backup")["rules"]
    (bind,) = [r for r in rules if "bind" in r["verbs"]]
    assert bind == {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "resourceNames": ["backup-exec"],
        "verbs": ["bind"],
    }
    assert ("", "pods/exec", "create") not in grants(role(docs, "ClusterRole", "backup"))  # the controller never execs
    deployment = find(docs, "Deployment")[0].body
    for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
    settings = load_settings(Settings)
    assert settings.exec_cluster_role == "backup-exec"
    assert settings.exec_service_account == account["metadata"]["name"]
