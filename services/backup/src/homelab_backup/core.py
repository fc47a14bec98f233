"""What to back up, where it runs, and the Job that does it: pure functions of the cluster's objects.

Every PVC is backed up unless opted out, on its PVC or its namespace (annotation or label):

- ``k8up.io/backup: "false"`` (k8up's key, so manifests brought from k8up keep working);
- ``backup.homelab.dev/enabled: "false"`` (ours; ``"true"`` on a PVC overrides a namespace's opt-out).

A value other than ``true``/``false`` is not silently taken as either: the volume is still backed up (losing
data is worse than an extra backup) and the mistake is reported as an Event naming the key.

The Job runs on the node where the volume is attached (a pod using it, else the PVC's
``volume.kubernetes.io/selected-node``), so a ReadWriteOnce volume is never multi-attached, and mounts the
volume read-only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

K8UP_BACKUP = "k8up.io/backup"
K8UP_COMMAND = "k8up.io/backupcommand"
K8UP_EXTENSION = "k8up.io/file-extension"
ENABLED = "backup.homelab.dev/enabled"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
OPT_OUT_KEYS = (K8UP_BACKUP, ENABLED)

LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGER = "homelab-backup"
LABEL_ACTION = "backup.homelab.dev/action"
LABEL_REPOSITORY = "backup.homelab.dev/repository"
ANNOTATION_TARGET = "backup.homelab.dev/target"
ANNOTATION_SLOT = "backup.homelab.dev/slot"
MOUNT = "/data"
SCRATCH = "/scratch"


@dataclass(frozen=True)
class Problem:
    """An annotation mistake on an object: reported as a Warning Event, never fatal."""

    kind: str
    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class Volume:
    """A PVC to back up: where it is attached, and the pods that use it."""

    namespace: str
    name: str
    node: str | None
    pods: tuple[str, ...] = ()
    command: str | None = None  # k8up.io/backupcommand of a pod using it
    command_pod: str | None = None
    extension: str = ""
    #: "pvc", or "k3s": a k3s server node's datastore (etcd snapshots and the server token), ``name`` the node
    kind: str = "pvc"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Selection:
    volumes: list[Volume] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why
    problems: list[Problem] = field(default_factory=list)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def _flag(obj: Mapping[str, Any], kind: str, problems: list[Problem]) -> bool | None:
    """The object's opt-in/opt-out: True, False or None (not said). Looks at annotations, then labels."""
    meta = _meta(obj)
    verdict: bool | None = None
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        for key in OPT_OUT_KEYS:
            if key not in source:
                continue
            value = str(source[key]).strip().lower()
            if value in ("true", "false"):
                said = value == "true"
                verdict = said if verdict is None or key == ENABLED else verdict
            else:
                problems.append(
                    Problem(
                        kind,
                        str(meta.get("namespace") or ""),
                        str(meta.get("name") or ""),
                        f'{key}: {source[key]!r} is neither "true" nor "false"; the volume is still backed up',
                    )
                )
    return verdict


def select(
    pvcs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], namespaces: Iterable[Mapping[str, Any]]
) -> Selection:
    """The volumes to back up, those skipped (and why), and annotation mistakes."""
    out = Selection()
    ns_flags: dict[str, bool | None] = {}
    for ns in namespaces:
        ns_flags[str(_meta(ns).get("name"))] = _flag(ns, "Namespace", out.problems)
    users: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for pod in pods:
        meta = _meta(pod)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
            continue
        if (meta.get("labels") or {}).get(LABEL_MANAGED) == MANAGER:
            continue  # our own Jobs' pods
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                users.setdefault((str(meta.get("namespace")), str(claim)), []).append(pod)
    for pvc in sorted(pvcs, key=lambda p: (str(_meta(p).get("namespace")), str(_meta(p).get("name")))):
        meta = _meta(pvc)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        key = f"{namespace}/{name}"
        if (pvc.get("status") or {}).get("phase", "Bound") != "Bound":
            out.skipped[key] = "not bound yet"
            continue
        own = _flag(pvc, "PersistentVolumeClaim", out.problems)
        in_ns = ns_flags.get(namespace)
        if own is False or (own is None and in_ns is False):
            where = "the PVC" if own is False else f"namespace {namespace}"
            out.skipped[key] = f"opted out on {where}"
            continue
        pods_using = sorted(users.get((namespace, name), []), key=lambda p: str(_meta(p).get("name")))
        node = next(
            ((p.get("spec") or {}).get("nodeName") for p in pods_using if (p.get("spec") or {}).get("nodeName")), None
        )
        node = node or (meta.get("annotations") or {}).get(SELECTED_NODE)
        command, command_pod, extension = None, None, ""
        for pod in pods_using:
            annotations = _meta(pod).get("annotations") or {}
            if annotations.get(K8UP_COMMAND):
                command, command_pod = str(annotations[K8UP_COMMAND]), str(_meta(pod).get("name"))
                extension = str(annotations.get(K8UP_EXTENSION, ""))
                break
        out.volumes.append(
            Volume(
                namespace,
                name,
                str(node) if node else None,
                tuple(str(_meta(p).get("name")) for p in pods_using),
                command,
                command_pod,
                extension,
            )
        )
    return out


#: Node labels k3s puts on server nodes (etcd: embedded etcd members, which take the snapshots).
SERVER_ROLES = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
    "node-role.kubernetes.io/etcd",
)
#: The pseudo-namespace of k3s datastore targets: ``k3s/<node>`` in Job targets, metrics and the API.
K3S = "k3s"


def server_volumes(nodes: Iterable[Mapping[str, Any]]) -> list[Volume]:
    """One datastore "volume" per k3s server node (by its role labels), backed up from the node's own disk."""
    out = []
    for node in nodes:
        meta = _meta(node)
        labels = meta.get("labels") or {}
        if any(str(labels.get(role, "")).lower() == "true" for role in SERVER_ROLES):
            name = str(meta.get("name"))
            out.append(Volume(K3S, name, name, kind=K3S))
    return sorted(out, key=lambda v: v.name)


def job_name(action: str, key: str, repository: str, slot: str) -> str:
    """A stable, DNS-safe, <= 63 character name: one Job per action, volume, repository and slot."""
    digest = hashlib.sha256(f"{action}|{key}|{repository}|{slot}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9-]", "-", f"{action}-{key.split('/')[-1]}-{repository}".lower())[:40].strip("-")
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class JobSpec:
    """What a Job needs besides the action: the image, the Secret with the repositories, resources."""

    image: str
    secret: str
    service_account: str = ""
    timeout_seconds: int = 6 * 3600
    stale_lock_seconds: int = 3600
    pull_policy: str = "IfNotPresent"
    #: The service account of dump Jobs (k8up.io/backupcommand): may list pods and exec into them, in the
    #: namespaces where the controller bound it (see homelab_backup.podexec).
    exec_service_account: str = "backup-exec"
    #: k3s server nodes: where k3s writes its etcd snapshots, and the server token a restore needs.
    k3s_snapshot_dir: str = "/var/lib/rancher/k3s/server/db/snapshots"
    k3s_token_file: str = "/var/lib/rancher/k3s/server/token"  # noqa: S105 (a path)


def repository_env(secret: str, repository: str) -> list[dict[str, Any]]:
    """The runner's environment for one repository: everything from the Secret, nothing inline."""
    return [
        {
            "name": "HOMELAB_BACKUP_REPOSITORIES",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "repositories.json"}},
        },
        {"name": "HOMELAB_BACKUP_REPOSITORY", "value": repository},
    ]


def build_job(
    action: str,
    volume: Volume | None,
    repository: str,
    slot: str,
    spec: JobSpec,
    *,
    namespace: str,
    args: Iterable[str] = (),
    restore_into: str | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job running ``homelab-backup run <action>`` for one volume (or none: maintain) and repository.

    Backups and restores run in the volume's namespace, on its node, with it mounted; drills and maintenance
    need no volume and run in ``namespace`` (the controller's).
    """
    key = volume.key if volume else f"{namespace}/-"
    host = volume is not None and volume.kind == K3S and action == "backup"
    dump = volume is not None and volume.kind == "pvc" and action == "backup" and bool(volume.command)
    mounted = volume is not None and volume.kind == "pvc" and action in ("backup", "restore") and not dump
    name = job_name(action, key, repository, slot)
    labels = {
        LABEL_MANAGED: MANAGER,
        "app.kubernetes.io/name": "homelab-backup",
        "app.kubernetes.io/component": "runner",
        LABEL_ACTION: action,
        LABEL_REPOSITORY: repository,
    }
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "scratch", "mountPath": SCRATCH},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the container's own emptyDir)
    ]
    if mounted and volume is not None:
        claim = restore_into if action == "restore" and restore_into else volume.name
        read_only = action == "backup"
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": "data", "mountPath": MOUNT, "readOnly": read_only})
    if host:  # the node's own files, read-only: the snapshots directory and the token beside it
        volumes.append(_host_path("snapshots", spec.k3s_snapshot_dir, "DirectoryOrCreate"))
        volumes.append(_host_path("token", spec.k3s_token_file, "File"))
        mounts.append({"name": "snapshots", "mountPath": f"{MOUNT}/snapshots", "readOnly": True})
        mounts.append({"name": "token", "mountPath": f"{MOUNT}/token", "readOnly": True})
    command = ["homelab-backup", "run", action, "--repository", repository, "--target", key, *args]
    if dump:  # the runner execs the pod's command in the pod: no volume here, a service account that may exec
        command.append("--from-pod")
    privileged = action in CAPABILITIES and not dump
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": dump,
        "securityContext": {**_identity(privileged), "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "runner",
                "image": spec.image,
                "imagePullPolicy": spec.pull_policy,
                "command": command,
                "env": [
                    *repository_env(spec.secret, repository),
                    {"name": "HOMELAB_BACKUP_TIMEOUT_SECONDS", "value": str(spec.timeout_seconds)},
                    {"name": "HOMELAB_BACKUP_STALE_LOCK_SECONDS", "value": str(spec.stale_lock_seconds)},
                    {"name": "RESTIC_CACHE_DIR", "value": f"{SCRATCH}/cache"},
                ],
                "volumeMounts": mounts,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {
                        "drop": ["ALL"],
                        **({"add": list(CAPABILITIES[action])} if privileged else {}),
                    },
                },
                "terminationMessagePolicy": "File",
            }
        ],
        "volumes": volumes,
    }
    if mounted and volume is not None and volume.node:
        pod_spec["nodeName"] = volume.node  # where the volume is attached: no multi-attach of RWO volumes
    if host and volume is not None:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": str(volume.node)}
        pod_spec["tolerations"] = SERVER_TOLERATIONS
    if dump:
        pod_spec["serviceAccountName"] = spec.exec_service_account
    elif spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": volume.namespace if mounted and volume is not None else namespace,
            "labels": labels,
            "annotations": {ANNOTATION_TARGET: key, ANNOTATION_SLOT: slot},
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 7 * 86400,
            "activeDeadlineSeconds": spec.timeout_seconds + 600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


#: Reading every file of a volume whatever its owner needs root with CAP_DAC_READ_SEARCH (read-only: it cannot
#: write, nor bypass write permissions); a restore writes owners and modes back. Everything else runs as 10001.
CAPABILITIES = {"backup": ("DAC_READ_SEARCH",), "restore": ("CHOWN", "DAC_OVERRIDE", "FOWNER")}


#: Server nodes may be tainted so that only the control plane runs there (k3s: CriticalAddonsOnly, or the
#: control-plane/master/etcd NoSchedule and NoExecute taints some installs add).
SERVER_TOLERATIONS = [
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/etcd", "operator": "Exists"},
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
]


def _host_path(name: str, path: str, kind: str) -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def _identity(privileged: bool) -> dict[str, Any]:
    if privileged:
        return {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False}
    return {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True}


def job_report(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The runner's report of a finished Job (its pod's termination message), or a failure of our own words."""
    status = job.get("status") or {}
    if not (status.get("succeeded") or status.get("failed")):
        return None
    name = _meta(job).get("name")
    for pod in pods:
        if (_meta(pod).get("labels") or {}).get("job-name") != name:
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if message:
                try:
                    report = json.loads(message)
                except json.JSONDecodeError:
                    continue
                if isinstance(report, dict) and "outcome" in report:
                    return report
    reason = "the runner left no report (killed, evicted, or out of time)"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("message"):
            reason = f"{reason}: {condition['message']}"
    return {"outcome": "failed", "message": reason}
