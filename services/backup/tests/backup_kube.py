"""The Kubernetes side of the backup tests: a cluster in the emulator (namespaces, PVCs, pods, the repositories
Secret), a settable clock, and a started controller."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import pytest

from homelab_backup.app import Runtime, build_runtime
from homelab_backup.settings import Settings
from homelab_common.k8s import Backoff
from homelab_common.k8s.testing import KubeEmulator, wait_for

FAST = Backoff(initial=0.05, maximum=0.2)
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
REPOS = [
    {"name": "nas", "url": "sftp:backup@nas.home.arpa:/srv/restic", "password": "p1"},
    {"name": "offsite", "url": "s3:https://s3.example.net/bucket/homelab", "password": "p2", "offsite": True},
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "repositories": REPOS,
        "schedule": "0 2 * * *",
        "jitter_minutes": 120,
        "drill_schedule": "0 6 * * 6",
        "check_schedule": "0 7 * * 0",
        "namespace": "backup",
        "max_running_jobs": 50,
        "identity": "backup-0",
    }
    values.update(overrides)
    return Settings(**values)


def namespace(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Any:
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def pvc(ns: str, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    }


def pod(ns: str, name: str, claim: str, node: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "app"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
        "status": {"phase": "Running"},
    }


@pytest.fixture
def cluster(kube: KubeEmulator) -> kubernetes.client.CoreV1Api:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    for ns in ("apps", "gitea", "backup"):
        core.create_namespace(namespace(ns))
    core.create_namespace(namespace("scratch", labels={"backup.homelab.dev/enabled": "false"}))
    core.create_namespace(namespace("media", annotations={"k8up.io/backup": "false"}))
    secret = {"repositories.json": base64.b64encode(json.dumps(REPOS).encode()).decode()}
    core.create_namespaced_secret(
        "backup", {"metadata": {"name": "homelab-backup-repositories"}, "data": secret, "type": "Opaque"}
    )
    core.create_namespaced_persistent_volume_claim("apps", pvc("apps", "data"))
    core.create_namespaced_pod("apps", pod("apps", "app-0", "data", "node2"))
    core.create_namespaced_persistent_volume_claim(
        "apps", pvc("apps", "unused", {"volume.kubernetes.io/selected-node": "node3"})
    )
    core.create_namespaced_persistent_volume_claim("apps", pvc("apps", "cache", {"k8up.io/backup": "false"}))
    core.create_namespaced_persistent_volume_claim("apps", pvc("apps", "typo", {"k8up.io/backup": "maybe"}))
    core.create_namespaced_persistent_volume_claim("scratch", pvc("scratch", "tmp"))
    core.create_namespaced_persistent_volume_claim(
        "media", pvc("media", "photos", {"backup.homelab.dev/enabled": "true"})
    )
    core.create_namespaced_persistent_volume_claim("media", pvc("media", "movies"))
    core.create_namespaced_persistent_volume_claim("gitea", pvc("gitea", "db"))
    core.create_namespaced_pod(
        "gitea",
        pod("gitea", "postgres-0", "db", "node1", {"k8up.io/backupcommand": "pg_dumpall -U gitea"}),
    )
    return core


def started(kube: KubeEmulator, clock: Clock, **overrides: Any) -> Runtime:
    runtime = build_runtime(settings(**overrides), api_client=kube.api_client(), kube_backoff=FAST, now=clock)
    runtime.start()
    wait_for(lambda: runtime.controller.ready() is None)
    return runtime


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def controller(kube: KubeEmulator, cluster: kubernetes.client.CoreV1Api, clock: Clock) -> Iterator[Runtime]:
    runtime = started(kube, clock)
    wait_for(runtime.controller.is_leader)
    yield runtime
    runtime.stop()
