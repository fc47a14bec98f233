"""Application-consistent dumps: ``k8up.io/backupcommand`` exec'd inside the annotated pod through the API server.

The runner talks to the Kubernetes emulator with the real client; the emulator's pods/exec endpoint speaks the
channel.k8s.io websocket protocol and plays the pod's container with a local subprocess, so the command dumps a
real SQLite database (Debian's sqlite3) and the bytes go through the same wire a cluster would use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from backup_helpers import PASSWORD, local_repo, make_restic, restic_binary
from backup_kube import pod

from homelab_backup.cli import run
from homelab_backup.restic import Outcome
from homelab_backup.runner import Runner
from homelab_backup.settings import Settings
from homelab_common.k8s.testing import KubeEmulator


def sqlite3() -> str:
    found = shutil.which("sqlite3")
    if found is None:
        pytest.skip("sqlite3 missing: ./task deps installs it (scripts/test-debs.txt)")
    return found


def database(path: Path) -> Path:
    """A small but real database: a schema, an index, a trigger, unicode text and binary blobs."""
    script = ["CREATE TABLE repo (id INTEGER PRIMARY KEY, name TEXT NOT NULL, blob BLOB);"]
    script.append("CREATE INDEX repo_name ON repo(name);")
    script += [f"INSERT INTO repo (name, blob) VALUES ('dépôt-{i}', randomblob({i % 97}));" for i in range(3000)]
    script.append("CREATE TRIGGER t AFTER DELETE ON repo BEGIN SELECT 1; END;")
    subprocess.run([sqlite3(), str(path)], input="\n".join(script), text=True, check=True, timeout=60)
    return path


def dump_pod(command: str, **annotations: str) -> dict[str, Any]:
    found = pod("gitea", "gitea-0", "db", "node1", {"k8up.io/backupcommand": command, **annotations})
    found["spec"]["containers"] = [{"name": "sidecar", "image": "x"}, {"name": "gitea", "image": "gitea"}]
    found["metadata"]["annotations"].setdefault("k8up.io/backupcommand-container", "gitea")
    return found


def backup(kube: KubeEmulator, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    repo = local_repo(tmp_path)
    report = tmp_path / "report.json"
    settings = Settings(
        repositories=[{"name": "nas", "url": repo.url, "password": PASSWORD, "init": True}],
        restic=restic_binary(),
        report_file=str(report),
        kubernetes=False,
    )
    args = ["backup", "--repository", "nas", "--target", "gitea/db", "--from-pod"]
    with kube.api_client() as client:
        code = run(args, settings, api_client=client)
    return code, json.loads(report.read_text())


def test_a_sqlite_dump_made_in_the_pod_restores_byte_identical(kube: KubeEmulator, tmp_path: Path) -> None:
    db = database(tmp_path / "gitea.db")
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_pod("gitea", dump_pod(f"sqlite3 {db} .dump", **{"k8up.io/file-extension": ".sql"}))
    code, report = backup(kube, tmp_path)
    assert code == 0, report
    assert report["outcome"] == "ok"
    assert "pod gitea/gitea-0 (container gitea)" in report["message"]
    expected = subprocess.run([sqlite3(), str(db), ".dump"], capture_output=True, check=True, timeout=60).stdout
    assert report["bytes"] == len(expected)
    runner, repo = Runner(make_restic(tmp_path)), local_repo(tmp_path)
    assert runner.restore(repo, "gitea/db", tmp_path / "out").ok
    assert (tmp_path / "out" / "db.sql").read_bytes() == expected
    (tmp_path / "scratch").mkdir()
    drill = runner.drill(repo, "gitea/db", tmp_path / "scratch")
    assert drill.outcome is Outcome.ok, drill.message


def test_a_failing_dump_command_fails_the_backup_and_keeps_nothing(kube: KubeEmulator, tmp_path: Path) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_pod("gitea", dump_pod("echo half a dump; echo 'pg_dump: connection lost' >&2; exit 2"))
    code, report = backup(kube, tmp_path)
    assert code == 1
    assert report["outcome"] == "failed"
    assert "in pod gitea/gitea-0 (container gitea) exited with 2: pg_dump: connection lost" in report["message"]
    assert "its output was not kept" in report["message"]
    _, snapshots = Runner(make_restic(tmp_path)).snapshots(local_repo(tmp_path), "gitea/db")
    assert snapshots == []


def test_a_dump_without_a_running_annotated_pod_or_container_fails(kube: KubeEmulator, tmp_path: Path) -> None:
    code, report = backup(kube, tmp_path)
    assert code == 1
    assert "no running pod in gitea mounts db with a k8up.io/backupcommand annotation" in report["message"]
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_pod("gitea", dump_pod("true", **{"k8up.io/backupcommand-container": "postgres"}))
    code, report = backup(kube, tmp_path)
    assert code == 1
    assert report["outcome"] == "failed"
    assert "refused to exec in pod gitea/gitea-0 (container postgres)" in report["message"]
    assert "container postgres is not valid for pod gitea-0" in report["message"]
