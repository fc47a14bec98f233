"""charts/backup renders a valid configuration, the RBAC the controller needs, and alerts that promtool proves fire."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def alert(groups: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any]:
    """The alert promtool should see: the rule's labels plus ``labels``, its annotations with those filled in."""
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == name)
    values = {**rule.get("labels", {}), **labels}
    annotations = {
        key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: values[m[1]], text)
        for key, text in rule.get("annotations", {}).items()
    }
    return {"exp_labels": values, "exp_annotations": annotations}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def policy(repositories: int, offsite: int) -> list[dict[str, str]]:
    return [
        series("homelab_backup_policy_repositories", f"{repositories}x30", namespace="backup"),
        series("homelab_backup_policy_offsite_repositories", f"{offsite}x30", namespace="backup"),
    ]


def promtool_tests(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each alert firing on the series that should fire it, and silent on healthy ones."""
    data = {"namespace": "apps", "pvc": "data", "repository": "nas"}
    violated = [alert(groups, "BackupPolicy321Violated", namespace="backup")]
    return [
        {
            "interval": "1m",
            "input_series": policy(1, 0),
            "alert_rule_test": [{"eval_time": "20m", "alertname": "BackupPolicy321Violated", "exp_alerts": violated}],
        },
        {
            "interval": "1m",
            "input_series": policy(3, 0),  # three copies, all in the same house
            "alert_rule_test": [{"eval_time": "20m", "alertname": "BackupPolicy321Violated", "exp_alerts": violated}],
        },
        {
            "interval": "1m",
            "input_series": policy(2, 1),
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "BackupPolicy321Violated", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "BackupControllerDown", "exp_alerts": []},
            ],
        },
        {
            "interval": "10m",  # (a series is stale 5m after its sample: no `for` rules in this group)
            "input_series": [
                # apps/data last succeeded at t=0, apps/fresh at 24h
                series("homelab_backup_last_success_timestamp_seconds", "0x200", **data),
                series("homelab_backup_last_success_timestamp_seconds", "86400x200", **(data | {"pvc": "fresh"})),
                series("homelab_backup_failing", "1x200", **data),
                series("homelab_backup_failing", "0x200", **(data | {"pvc": "fresh"})),
                series("homelab_backup_drill_ok", "0x200", **data),
                series("homelab_backup_drill_ok", "1x200", **(data | {"pvc": "fresh"})),
                series("homelab_backup_check_ok", "0x200", repository="offsite"),
                series("homelab_backup_check_ok", "1x200", repository="nas"),
            ],
            "alert_rule_test": [
                {"eval_time": "24h", "alertname": "BackupMissed", "exp_alerts": []},
                {
                    "eval_time": "26h",
                    "alertname": "BackupMissed",
                    "exp_alerts": [alert(groups, "BackupMissed", **data)],
                },
                {
                    "eval_time": "1h",
                    "alertname": "BackupDrillFailed",
                    "exp_alerts": [alert(groups, "BackupDrillFailed", **data)],
                },
                {
                    "eval_time": "1h",
                    "alertname": "BackupCheckFailed",
                    "exp_alerts": [alert(groups, "BackupCheckFailed", repository="offsite")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series("homelab_backup_failing", "1x150", **data),
                series("homelab_backup_failing", "0x150", **(data | {"pvc": "fresh"})),
            ],
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": "BackupFailing", "exp_alerts": []},
                {
                    "eval_time": "2h",
                    "alertname": "BackupFailing",
                    "exp_alerts": [alert(groups, "BackupFailing", **data)],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [series("up", "1x30", job="other")],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "BackupControllerDown",
                    "exp_alerts": [alert(groups, "BackupControllerDown")],
                }
            ],
        },
    ]


def run_promtool(
    tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: ./task deps installs Debian's prometheus (scripts/test-debs.txt)")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
    return subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_alerts_fire_as_promtool_says(docs: list[Document], tmp_path: Path) -> None:
    groups = find(docs, "PrometheusRule")[0].body["spec"]["groups"]
    check = subprocess.run(["promtool", "check", "rules", "/dev/stdin"], input=yaml.safe_dump({"groups": groups}),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    done = run_promtool(tmp_path, groups, promtool_tests(groups))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_promtool_test_can_fail(docs: list[Document], tmp_path: Path) -> None:
    groups = find(docs, "PrometheusRule")[0].body["spec"]["groups"]
    wrong = [
        {
            "interval": "1m",
            "input_series": policy(2, 1),  # healthy: the rule must not fire, so expecting it must fail
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "BackupPolicy321Violated",
                    "exp_alerts": [alert(groups, "BackupPolicy321Violated", namespace="backup")],
                }
            ],
        }
    ]
    done = run_promtool(tmp_path, groups, wrong)
    assert done.returncode != 0
    assert "BackupPolicy321Violated" in done.stdout + done.stderr
