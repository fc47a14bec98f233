"""charts/backup renders a valid configuration and the RBAC the controller needs. Its alerts are tested with the
others (promtool fire and quiet cases, runbook pages) in observability/tests."""

from __future__ import annotations

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
    rules = find(docs, "ClusterRole")[0].body["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("", "persistentvolumeclaims", "watch"), ("", "pods", "watch"), ("", "namespaces", "watch")} <= granted
    assert {("batch", "jobs", "create"), ("", "secrets", "create"), ("events.k8s.io", "events", "create")} <= granted
    assert ("batch", "jobs", "delete") not in granted
    lease = find(docs, "Role")[0].body["rules"]
    assert {v for rule in lease if "leases" in rule["resources"] for v in rule["verbs"]} == {"get", "create", "update"}
