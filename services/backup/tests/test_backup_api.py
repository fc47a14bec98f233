"""The HTTP API (volumes, status, snapshots, triggers, restore with dry run) against the emulator and a real
restic repository; fuzzed against its OpenAPI; and ``homelab-backup run`` as a Job runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import schemathesis
from backup_helpers import PASSWORD, local_repo, make_restic, mixed_tree, restic_binary
from backup_kube import Clock, settings
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from homelab_backup.app import Runtime, create_app
from homelab_backup.runner import Runner
from homelab_common.k8s import Backoff
from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import api_schema

FAST = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repos")


@pytest.fixture
def app(kube: KubeEmulator, cluster: kubernetes.client.CoreV1Api, clock: Clock, repo_dir: Path) -> Iterator[Flask]:
    repos = [
        {"name": "nas", "url": str(repo_dir / "repo-nas"), "password": PASSWORD, "init": True},
        {"name": "offsite", "url": str(repo_dir / "repo-offsite"), "password": PASSWORD, "offsite": True},
    ]
    app = create_app(
        settings(repositories=repos, restic=restic_binary()), api_client=kube.api_client(), kube_backoff=FAST, now=clock
    )
    runtime: Runtime = app.extensions["homelab_backup"]
    wait_for(lambda: runtime.controller.ready() is None)
    wait_for(runtime.controller.is_leader)
    wait_for(lambda: runtime.controller.reconciler.runs > 0)
    yield app
    runtime.stop()


@pytest.fixture
def backed_up(app: Flask, repo_dir: Path) -> dict[str, bytes]:
    runtime: Runtime = app.extensions["homelab_backup"]
    source = repo_dir / "volume"
    written = mixed_tree(source, files=6)
    runner = Runner(make_restic(repo_dir))
    report = runner.backup(runtime.settings.repository_named("nas"), "apps/data", source)
    assert report.ok, report.message
    return written


def test_volumes_and_status(app: Flask) -> None:
    client = app.test_client()
    body = client.get("/volumes").get_json()
    names = [f"{v['namespace']}/{v['name']}" for v in body["volumes"]]
    assert names == ["apps/data", "apps/typo", "apps/unused", "gitea/db", "media/photos"]
    data = body["volumes"][0]
    assert data["node"] == "node2"
    assert data["pods"] == ["app-0"]
    assert [r["repository"] for r in data["repositories"]] == ["nas", "offsite"]
    assert {"volume": "apps/cache", "reason": "opted out on the PVC"} in body["skipped"]
    assert next(v for v in body["volumes"] if v["name"] == "db")["dump_command"] is True
    status = client.get("/status").get_json()
    assert status["leader"] is True
    assert status["policy_ok"] is True
    assert [(r["name"], r["kind"], r["offsite"]) for r in status["repositories"]] == [
        ("nas", "local", False),
        ("offsite", "local", True),
    ]
    assert any("typo" in p for p in status["annotation_problems"])


def test_snapshots_are_read_from_the_repository(app: Flask, backed_up: dict[str, bytes]) -> None:
    client = app.test_client()
    snapshots = client.get("/volumes/apps/data/snapshots?repository=nas").get_json()
    assert len(snapshots) == 1
    assert snapshots[0]["files"] == len(backed_up)
    missing = client.get("/volumes/apps/data/snapshots?repository=offsite")
    assert missing.status_code == 503
    assert "no_repository" in missing.get_json()["message"]
    assert client.get("/volumes/apps/cache/snapshots?repository=nas").status_code == 404


def test_restore_dry_run_lists_files_and_creates_nothing(
    app: Flask, backed_up: dict[str, bytes], kube: KubeEmulator, cluster: kubernetes.client.CoreV1Api
) -> None:
    cluster.create_namespaced_persistent_volume_claim(
        "apps", {"metadata": {"name": "restored"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    )
    wait_for(lambda: app.extensions["homelab_backup"].controller.pvcs.get("apps/restored") is not None)
    client = app.test_client()
    body = {"repository": "nas", "into": "restored", "dry_run": True}
    plan = client.post("/volumes/apps/data/restore", json=body)
    assert plan.status_code == 200, plan.get_json()
    result = plan.get_json()
    assert sorted(f["path"].lstrip("/") for f in result["files"]) == sorted(backed_up)
    assert result["bytes"] == sum(len(d) for d in backed_up.values())
    assert result["job"] is None
    assert kube.objects("batch/v1/jobs") == {}

    started = client.post("/volumes/apps/data/restore", json=body | {"dry_run": False})
    assert started.status_code == 202
    job = kube.objects("batch/v1/jobs")[f"apps/{started.get_json()['job']}"]
    spec = job["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "restored", "readOnly": False}} in spec["volumes"]
    command = spec["containers"][0]["command"]
    assert command[2] == "restore"
    assert command[command.index("--snapshot") + 1] == result["snapshot"]


def test_restore_refuses_a_pvc_in_use_or_missing(app: Flask, backed_up: dict[str, bytes]) -> None:
    client = app.test_client()
    in_use = client.post("/volumes/apps/data/restore", json={"repository": "nas", "into": "data"})
    assert in_use.status_code == 409
    assert "app-0" in in_use.get_json()["message"]
    missing = client.post("/volumes/apps/data/restore", json={"repository": "nas", "into": "nope"})
    assert missing.status_code == 404
    bad = client.post("/volumes/apps/data/restore", json={"repository": "nas", "into": "Bad_Name"})
    assert bad.status_code == 400
    assert bad.get_json()["fields"][0]["field"] == "body.into"


def test_a_k3s_datastore_is_listed_and_its_restore_points_to_the_runbook(
    app: Flask, cluster: kubernetes.client.CoreV1Api
) -> None:
    labels = {"node-role.kubernetes.io/control-plane": "true"}
    cluster.create_node({"metadata": {"name": "server1", "labels": labels}})
    runtime: Runtime = app.extensions["homelab_backup"]
    wait_for(lambda: "k3s/server1" in {v.key for v in runtime.controller.status.selection.volumes})
    client = app.test_client()
    listed = {(v["namespace"], v["name"]): v for v in client.get("/volumes").get_json()["volumes"]}
    assert listed[("k3s", "server1")]["kind"] == "k3s"
    assert listed[("apps", "data")]["kind"] == "pvc"
    refused = client.post("/volumes/k3s/server1/restore", json={"repository": "nas", "into": "x"})
    assert refused.status_code == 409
    assert "--cluster-reset" in refused.get_json()["message"]


def test_triggers_start_jobs(app: Flask, kube: KubeEmulator) -> None:
    client = app.test_client()
    response = client.post("/volumes/apps/data/backup", json={})
    assert response.status_code == 202
    assert len(response.get_json()["jobs"]) == 2
    drill = client.post("/volumes/apps/data/drill", json={"repository": "offsite"})
    assert drill.status_code == 202
    found = kube.objects("batch/v1/jobs")
    assert f"backup/{drill.get_json()['jobs'][0]}" in found
    assert client.post("/volumes/apps/data/backup", json={"repository": "usb"}).status_code == 404
    assert client.post("/volumes/media/movies/backup", json={}).status_code == 404


@pytest.fixture
def backup_api(app: Flask) -> Any:
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("backup_api")


@schema.parametrize()
@hypothesis_settings(max_examples=10, suppress_health_check=list(HealthCheck), deadline=None)
def test_backup_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_settings_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="HOMELAB_BACKUP_SCHEDULE"):
        load_settings(type(settings()), schedule="every night", repositories=[])
    with pytest.raises(SettingsError, match="used twice: nas"):
        load_settings(
            type(settings()),
            repositories=[{"name": "nas", "url": "/a", "password": "x"}, {"name": "nas", "url": "/b", "password": "y"}],
        )
    assert settings(repositories=[]).policy_problems() == [
        "0 repository(ies): 3-2-1 needs at least 2",
        "no offsite repository: 3-2-1 needs one",
    ]


def run_cli(tmp_path: Path, repos: list[dict[str, Any]], *args: str) -> tuple[int, dict[str, Any] | None, str]:
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB_")}
    env |= {
        "HOMELAB_SECRETS_DIR": str(tmp_path / "no-secrets"),
        "HOMELAB_BACKUP_REPOSITORIES": json.dumps(repos),
        "HOMELAB_BACKUP_RESTIC": restic_binary(),
        "HOMELAB_BACKUP_REPORT_FILE": str(report),
        "HOMELAB_BACKUP_SCRATCH_DIR": str(tmp_path),
        "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "homelab_backup", "run", *args], env=env, capture_output=True, text=True, timeout=300
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return done.returncode, data, done.stdout + done.stderr


def test_the_runner_command_reports_and_exits_by_outcome(tmp_path: Path) -> None:
    repo = local_repo(tmp_path)
    repos = [{"name": "nas", "url": repo.url, "password": PASSWORD, "init": True}]
    source = tmp_path / "volume"
    mixed_tree(source, files=4)
    code, report, out = run_cli(
        tmp_path, repos, "backup", "--repository", "nas", "--target", "apps/data", "--source", str(source)
    )
    assert code == 0, out
    assert report is not None
    assert report["outcome"] == "ok"
    assert "backup apps/data -> nas (local)" in out
    code, report, out = run_cli(tmp_path, repos, "maintain", "--repository", "nas")
    assert code == 0, out
    assert report is not None
    assert report["details"]["snapshots"] == 1
    wrong = [{"name": "nas", "url": repo.url, "password": "hunter2-not-it"}]
    code, report, out = run_cli(
        tmp_path, wrong, "backup", "--repository", "nas", "--target", "apps/data", "--source", str(source)
    )
    assert code == 1
    assert report is not None
    assert report["outcome"] == "wrong_password"
    assert "next: the password does not open this repository" in out
    assert "hunter2" not in json.dumps(report) + out  # the password is never in the report or the log
    code, _, out = run_cli(tmp_path, repos, "backup", "--repository", "usb", "--target", "apps/data")
    assert code == 2
    assert "no repository 'usb' (known: nas)" in out
