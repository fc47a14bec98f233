"""The controller against the Kubernetes emulator (the real client over HTTP): which PVCs get Jobs, on which node,
how they are mounted, when (schedule + jitter), what the reports become, and who leads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes.client
from backup_kube import Clock, started

from homelab_backup.app import Runtime
from homelab_backup.controller import LAST_SUCCESS
from homelab_backup.core import ANNOTATION_SLOT, ANNOTATION_TARGET
from homelab_backup.schedule import offset
from homelab_common.k8s.testing import KubeEmulator, wait_for


def jobs(kube: KubeEmulator) -> dict[str, dict[str, Any]]:
    return kube.objects("batch/v1/jobs")


def by_target(found: dict[str, dict[str, Any]], action: str = "backup") -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for job in found.values():
        labels = job["metadata"]["labels"]
        if labels["backup.homelab.dev/action"] == action:
            out[(job["metadata"]["annotations"][ANNOTATION_TARGET], labels["backup.homelab.dev/repository"])] = job
    return out


def advance(runtime: Runtime, clock: Clock, to: datetime) -> None:
    clock.now = to
    runs = runtime.controller.reconciler.runs
    runtime.controller.reconciler.trigger()
    wait_for(lambda: runtime.controller.reconciler.runs > runs)


def test_nothing_runs_before_the_first_slot(controller: Runtime, kube: KubeEmulator) -> None:
    wait_for(lambda: controller.controller.reconciler.runs > 0)
    assert jobs(kube) == {}
    selection = controller.controller.status.selection
    assert sorted(v.key for v in selection.volumes) == [
        "apps/data",
        "apps/typo",
        "apps/unused",
        "gitea/db",
        "media/photos",
    ]
    assert selection.skipped == {
        "apps/cache": "opted out on the PVC",
        "media/movies": "opted out on namespace media",
        "scratch/tmp": "opted out on namespace scratch",
    }


def test_backup_jobs_per_pvc_and_repository_on_the_volumes_node_read_only(
    controller: Runtime, kube: KubeEmulator, clock: Clock
) -> None:
    advance(controller, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))  # past 02:00 + the largest jitter
    wait_for(lambda: len(by_target(jobs(kube))) == 10)
    found = by_target(jobs(kube))
    assert {target for target, _ in found} == {"apps/data", "apps/typo", "apps/unused", "gitea/db", "media/photos"}
    data = found[("apps/data", "nas")]
    spec = data["spec"]["template"]["spec"]
    assert data["metadata"]["namespace"] == "apps"
    assert spec["nodeName"] == "node2"  # where app-0 has the volume attached
    assert spec["volumes"][-1] == {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}
    container = spec["containers"][0]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert container["command"][:7] == [
        "homelab-backup",
        "run",
        "backup",
        "--repository",
        "nas",
        "--target",
        "apps/data",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["HOMELAB_BACKUP_REPOSITORIES"]["valueFrom"]["secretKeyRef"]["name"] == "homelab-backup-repositories"
    assert "p1" not in json.dumps(data)  # passwords only through the Secret
    assert found[("apps/unused", "offsite")]["spec"]["template"]["spec"]["nodeName"] == "node3"
    # the Secret follows the Jobs into their namespaces
    assert "apps/homelab-backup-repositories" in kube.objects("v1/secrets")
    assert "gitea/homelab-backup-repositories" not in kube.objects("v1/secrets")  # its dump Job runs in backup/


def test_slots_carry_each_volumes_stable_jitter_and_never_run_twice(
    controller: Runtime, kube: KubeEmulator, clock: Clock
) -> None:
    advance(controller, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    wait_for(lambda: len(by_target(jobs(kube))) == 10)
    slots = {}
    for (target, _), job in by_target(jobs(kube)).items():
        slot = datetime.fromisoformat(job["metadata"]["annotations"][ANNOTATION_SLOT])
        expected = datetime(2026, 12, 1, 2, 0, tzinfo=UTC) + offset(f"{target}|backup", timedelta(minutes=120))
        assert slot == expected.replace(microsecond=0) or slot == expected
        slots[target] = slot
    assert len(set(slots.values())) == len(slots)  # spread, not all at 02:00
    advance(controller, clock, datetime(2026, 12, 1, 5, 0, tzinfo=UTC))
    advance(controller, clock, datetime(2026, 12, 1, 23, 0, tzinfo=UTC))
    assert len(by_target(jobs(kube))) == 10  # same slot: no second Job
    advance(controller, clock, datetime(2026, 12, 2, 4, 30, tzinfo=UTC))
    assert len(jobs(kube)) == 10  # last night's are still running: no pile-up behind a slow repository
    for job in list(jobs(kube).values()):
        finish(kube, job, {"outcome": "ok", "message": "", "finished": 1796090000.0})
    wait_for(lambda: len(jobs(kube)) == 20)  # the next night's


def test_invalid_opt_out_value_is_reported_and_the_volume_still_backed_up(
    controller: Runtime, kube: KubeEmulator
) -> None:
    def event() -> list[dict[str, Any]]:
        return [
            e
            for e in kube.objects("events.k8s.io/v1/events", namespace="apps").values()
            if e.get("reason") == "InvalidAnnotation"
        ]

    wait_for(lambda: event())
    (found,) = event()
    assert found["regarding"]["name"] == "typo"
    assert "k8up.io/backup" in found["note"]
    assert "still backed up" in found["note"]
    assert "apps/typo" in {v.key for v in controller.controller.status.selection.volumes}


def finish(kube: KubeEmulator, job: dict[str, Any], report: dict[str, Any], succeeded: bool = True) -> None:
    """What the kubelet and the Job controller would do: the pod's termination message, the Job's status."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    batch = kubernetes.client.BatchV1Api(kube.api_client())
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    terminated = {"exitCode": 0 if succeeded else 1, "message": json.dumps(report)}
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": f"{name}-x", "namespace": ns, "labels": {"job-name": name}},
            "spec": {"containers": [{"name": "runner", "image": "i"}]},
            "status": {
                "phase": "Succeeded" if succeeded else "Failed",
                "containerStatuses": [
                    {
                        "name": "runner",
                        "image": "i",
                        "imageID": "i",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        },
    )
    status = {"succeeded": 1} if succeeded else {"failed": 1}
    batch.patch_namespaced_job(name, ns, {"status": status})


def test_reports_become_status_metrics_and_events(controller: Runtime, kube: KubeEmulator, clock: Clock) -> None:
    advance(controller, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    wait_for(lambda: len(by_target(jobs(kube))) == 10)
    found = by_target(jobs(kube))
    ok = {"outcome": "ok", "message": "snapshot 1234abcd", "finished": 1796090000.0, "seconds": 12.5, "files": 3}
    finish(kube, found[("apps/data", "nas")], ok)
    bad = {"outcome": "wrong_password", "message": "Fatal: wrong password", "advice": "fix the Secret"}
    finish(kube, found[("apps/data", "offsite")], bad, succeeded=False)
    status = controller.controller.status

    wait_for(lambda: ("backup", "apps/data", "offsite") in status.reports)
    wait_for(lambda: ("backup", "apps/data", "nas") in status.reports)
    assert status.reports[("backup", "apps/data", "nas")]["outcome"] == "ok"
    assert status.reports[("backup", "apps/data", "offsite")]["outcome"] == "wrong_password"
    wait_for(lambda: LAST_SUCCESS.labels("apps", "data", "nas")._value.get() == 1796090000.0)
    from prometheus_client import REGISTRY

    def failing(repository: str) -> float | None:
        labels = {"namespace": "apps", "pvc": "data", "repository": repository}
        return REGISTRY.get_sample_value("homelab_backup_failing", labels)

    wait_for(lambda: failing("offsite") == 1)  # the metrics follow the reports in the same reconcile
    assert failing("nas") == 0
    assert REGISTRY.get_sample_value("homelab_backup_policy_repositories") == 2
    assert REGISTRY.get_sample_value("homelab_backup_policy_offsite_repositories") == 1

    def events(reason: str) -> list[dict[str, Any]]:
        return [e for e in kube.objects("events.k8s.io/v1/events", namespace="apps").values() if e["reason"] == reason]

    wait_for(lambda: events("BackupFailed"))
    assert "wrong_password" in events("BackupFailed")[0]["note"]
    assert "fix the Secret" in events("BackupFailed")[0]["note"]
    assert events("BackupFailed")[0]["regarding"]["kind"] == "PersistentVolumeClaim"
    wait_for(lambda: events("BackupSucceeded"))


def test_drills_and_maintenance_run_in_the_controllers_namespace(
    controller: Runtime, kube: KubeEmulator, clock: Clock
) -> None:
    advance(controller, clock, datetime(2026, 12, 6, 9, 0, tzinfo=UTC))  # a Sunday after Saturday's drills
    wait_for(lambda: len(by_target(jobs(kube), "drill")) == 10)
    wait_for(lambda: len(by_target(jobs(kube), "maintain")) == 2)
    drill = by_target(jobs(kube), "drill")[("apps/data", "nas")]
    assert drill["metadata"]["namespace"] == "backup"
    spec = drill["spec"]["template"]["spec"]
    assert "nodeName" not in spec
    assert all(v["name"] != "data" for v in spec["volumes"])  # a drill never touches the live volume
    assert spec["securityContext"]["runAsNonRoot"] is True
    maintain = by_target(jobs(kube), "maintain")[("backup/-", "offsite")]
    assert maintain["spec"]["template"]["spec"]["containers"][0]["command"][2] == "maintain"


def test_only_the_leader_starts_jobs_and_the_other_takes_over(
    kube: KubeEmulator, cluster: kubernetes.client.CoreV1Api, clock: Clock
) -> None:
    first = started(kube, clock, identity="backup-0")
    wait_for(first.controller.is_leader)
    second = started(kube, clock, identity="backup-1")
    try:
        wait_for(lambda: second.controller.reconciler.runs > 0)
        assert not second.controller.is_leader()
        first.stop()  # releases the Lease
        wait_for(second.controller.is_leader, timeout=60)
        advance(second, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
        wait_for(lambda: len(by_target(jobs(kube))) == 10)
    finally:
        second.stop()


def test_a_dump_job_execs_from_the_controllers_namespace_with_exec_granted_only_there(
    controller: Runtime, kube: KubeEmulator, clock: Clock
) -> None:
    advance(controller, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    wait_for(lambda: len(by_target(jobs(kube))) == 10)
    db = by_target(jobs(kube))[("gitea/db", "nas")]
    assert db["metadata"]["namespace"] == "backup"  # beside the Secret; the dump is made in the app's pod
    spec = db["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"][-1] == "--from-pod"
    assert "pg_dumpall" not in json.dumps(db)  # the runner reads the command from the pod when it runs
    assert spec["serviceAccountName"] == "backup-exec"
    assert spec["automountServiceAccountToken"] is True
    assert "nodeName" not in spec
    assert all(v["name"] != "data" for v in spec["volumes"])  # nothing of the volume is mounted
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    bindings = kube.objects("rbac.authorization.k8s.io/v1/rolebindings")
    assert set(bindings) == {"gitea/backup-exec"}  # only where a pod carries k8up.io/backupcommand
    binding = bindings["gitea/backup-exec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "backup-exec",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "backup-exec", "namespace": "backup"}]
    # the other Jobs keep no service-account token
    data = by_target(jobs(kube))[("apps/data", "nas")]["spec"]["template"]["spec"]
    assert data["automountServiceAccountToken"] is False


def node(name: str, labels: dict[str, str], taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }


def test_k3s_server_nodes_get_datastore_jobs_on_their_node_read_only(
    controller: Runtime, kube: KubeEmulator, clock: Clock
) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    server = {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true"}
    taint = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    core.create_node(node("server1", server, taint))
    core.create_node(node("server2", {"node-role.kubernetes.io/master": "true"}))
    core.create_node(node("agent1", {"kubernetes.io/hostname": "agent1"}))
    status = controller.controller.status
    wait_for(lambda: {"k3s/server1", "k3s/server2"} <= {v.key for v in status.selection.volumes})
    assert "k3s/agent1" not in {v.key for v in status.selection.volumes}
    advance(controller, clock, datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    wait_for(lambda: len(by_target(jobs(kube))) == 14)  # 5 PVCs and 2 server nodes, each to 2 repositories
    found = by_target(jobs(kube))
    job = found[("k3s/server1", "offsite")]
    assert job["metadata"]["namespace"] == "backup"
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "server1"}
    tolerated = {t["key"] for t in spec["tolerations"] if t["operator"] == "Exists"}
    assert {
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
        "CriticalAddonsOnly",
    } <= tolerated
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["snapshots"]["hostPath"]["path"] == "/var/lib/rancher/k3s/server/db/snapshots"
    assert volumes["token"]["hostPath"] == {"path": "/var/lib/rancher/k3s/server/token", "type": "File"}
    container = spec["containers"][0]
    assert {"name": "snapshots", "mountPath": "/data/snapshots", "readOnly": True} in container["volumeMounts"]
    assert {"name": "token", "mountPath": "/data/token", "readOnly": True} in container["volumeMounts"]
    assert container["command"][2:7] == ["backup", "--repository", "offsite", "--target", "k3s/server1"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert spec["automountServiceAccountToken"] is False
    # reports become metrics like a PVC's (namespace="k3s", pvc=<node>): the backup alerts cover the datastore
    ok = {"outcome": "ok", "message": "snapshot 1234abcd", "finished": 1796090000.0, "seconds": 3.0, "files": 6}
    finish(kube, job, ok)
    wait_for(lambda: LAST_SUCCESS.labels("k3s", "server1", "offsite")._value.get() == 1796090000.0)
    finish(kube, found[("k3s/server2", "nas")], {"outcome": "no_space", "message": "disk full"}, succeeded=False)
    from prometheus_client import REGISTRY

    labels = {"namespace": "k3s", "pvc": "server2", "repository": "nas"}
    wait_for(lambda: REGISTRY.get_sample_value("homelab_backup_failing", labels) == 1)
    assert controller.controller.status.reports[("backup", "k3s/server2", "nas")]["outcome"] == "no_space"
