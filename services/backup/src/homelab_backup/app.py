"""The HTTP API: volumes with their last backup, drill and check per repository; snapshots; trigger a backup or a
drill; an operator's restore into a named PVC, with a dry run that lists what would be written.

Snapshots and dry runs call restic from the controller's pod (it has the repositories); backups, drills and
restores run as Jobs, like the scheduled ones, so they land on the right node with the right mounts.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
from flask import Flask
from pydantic import BaseModel, ConfigDict, Field

from homelab_backup.controller import Controller
from homelab_backup.core import Volume
from homelab_backup.restic import Restic
from homelab_backup.runner import Runner
from homelab_backup.settings import NAME, Settings
from homelab_common.k8s import Backoff, load_client
from homelab_common.openapi import Api
from homelab_common.settings import load_settings
from homelab_common.web import Conflict, NotFound, Unavailable, install_observability

log = logging.getLogger(__name__)

K8S_NAME = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"


class ReportOut(BaseModel):
    """A Job's report: outcome (ok, partial, wrong_password, ...), what happened and what to do next."""

    outcome: str
    message: str = ""
    advice: str = ""
    snapshot: str = ""
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    bytes_added: int = 0
    finished: float | None = None
    job: str = ""


class RepositoryState(BaseModel):
    repository: str
    backup: ReportOut | None
    drill: ReportOut | None


class VolumeOut(BaseModel):
    namespace: str
    name: str
    node: str | None
    pods: list[str]
    dump_command: bool
    #: "pvc", or "k3s": a k3s server node's datastore (etcd snapshots and token), ``name`` the node
    kind: str
    next_backup: str
    repositories: list[RepositoryState]


class SkippedOut(BaseModel):
    volume: str
    reason: str


class VolumesOut(BaseModel):
    volumes: list[VolumeOut]
    skipped: list[SkippedOut]


class RepositoryOut(BaseModel):
    name: str
    kind: str
    offsite: bool
    check: ReportOut | None


class StatusOut(BaseModel):
    leader: bool
    policy_ok: bool
    policy_problems: list[str]
    repositories: list[RepositoryOut]
    running_jobs: list[dict[str, str]]
    annotation_problems: list[str]


class SnapshotOut(BaseModel):
    id: str
    time: str
    files: int
    bytes: int


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: One repository, or every repository when left out.
    repository: str | None = Field(default=None, pattern=NAME)


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=NAME)
    snapshot: str = Field(default="latest", pattern=r"^(latest|[0-9a-f]{8,64})$")
    #: The PVC to write into, in the volume's namespace (a new one is safest; it must not be in use).
    into: str = Field(pattern=K8S_NAME, max_length=253)
    dry_run: bool = False


class JobsOut(BaseModel):
    jobs: list[str]


class RestoreOut(BaseModel):
    dry_run: bool
    job: str | None
    snapshot: str
    files: list[dict[str, Any]]
    file_count: int
    bytes: int


class SnapshotsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=NAME)


@dataclass
class Runtime:
    settings: Settings
    controller: Controller
    runner: Runner

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def _report(data: dict[str, Any] | None) -> ReportOut | None:
    if data is None:
        return None
    fields = {k: data[k] for k in ReportOut.model_fields if k in data}
    return ReportOut(**fields)


def make_api(runtime: Runtime) -> Api:
    api = Api("backup", "1.0.0", "3-2-1 restic backups of every PVC, with restore drills that verify the bytes")
    controller = runtime.controller
    settings = runtime.settings

    def find(namespace: str, name: str) -> Volume:
        for volume in controller.status.selection.volumes:
            if volume.namespace == namespace and volume.name == name:
                return volume
        why = controller.status.selection.skipped.get(f"{namespace}/{name}")
        raise NotFound(f"volume {namespace}/{name} is not backed up" + (f": {why}" if why else " (no such PVC)"))

    def repositories(wanted: str | None) -> list[str]:
        names = [r.name for r in settings.repositories]
        if wanted is None:
            return names
        if wanted not in names:
            raise NotFound(f"no repository {wanted!r} (known: {', '.join(names) or 'none'})")
        return [wanted]

    @api.get(
        "/volumes",
        summary="Every PVC: backed up (last backup and drill per repository) or skipped, and why",
        responses={200: VolumesOut},
    )
    def volumes() -> VolumesOut:
        status = controller.status
        out = []
        for volume in status.selection.volumes:
            states = [
                RepositoryState(
                    repository=r.name,
                    backup=_report(status.reports.get(("backup", volume.key, r.name))),
                    drill=_report(status.reports.get(("drill", volume.key, r.name))),
                )
                for r in settings.repositories
            ]
            out.append(
                VolumeOut(
                    namespace=volume.namespace,
                    name=volume.name,
                    node=volume.node,
                    pods=list(volume.pods),
                    dump_command=volume.command is not None,
                    kind=volume.kind,
                    next_backup=controller.next_backup(volume.key).isoformat(),
                    repositories=states,
                )
            )
        skipped = [SkippedOut(volume=k, reason=v) for k, v in sorted(status.selection.skipped.items())]
        return VolumesOut(volumes=out, skipped=skipped)

    @api.get(
        "/status",
        summary="Leadership, the 3-2-1 policy, repositories' last checks, running Jobs",
        responses={200: StatusOut},
    )
    def status() -> StatusOut:
        problems = settings.policy_problems()
        reports = controller.status.reports
        return StatusOut(
            leader=controller.is_leader(),
            policy_ok=not problems,
            policy_problems=problems,
            repositories=[
                RepositoryOut(
                    name=r.name,
                    kind=r.repository().kind,
                    offsite=r.offsite,
                    check=_report(reports.get(("maintain", "", r.name))),
                )
                for r in settings.repositories
            ],
            running_jobs=[{"job": k, **v} for k, v in sorted(controller.status.running.items())],
            annotation_problems=[
                f"{p.kind} {p.namespace}/{p.name}: {p.reason}" for p in controller.status.selection.problems
            ],
        )

    @api.get(
        "/volumes/<namespace>/<name>/snapshots",
        summary="The volume's snapshots in one repository (read from the repository now)",
        query=SnapshotsQuery,
        responses={200: list[SnapshotOut], 404: NotFound, 503: Unavailable},
    )
    def snapshots(namespace: str, name: str, query: SnapshotsQuery) -> list[SnapshotOut]:
        volume = find(namespace, name)
        repo = settings.repository_named(repositories(query.repository)[0])
        result, listed = runtime.runner.snapshots(repo, volume.key)
        if not result.ok:
            raise Unavailable(f"{repo.name}: {result.outcome.value}: {result.error} — {result.advice}")
        return [
            SnapshotOut(
                id=str(s["id"]),
                time=str(s.get("time", "")),
                files=int((s.get("summary") or {}).get("total_files_processed", 0)),
                bytes=int((s.get("summary") or {}).get("total_bytes_processed", 0)),
            )
            for s in listed
        ]

    def start(action: str, namespace: str, name: str, body: TriggerIn) -> JobsOut:
        volume = find(namespace, name)
        jobs = []
        for repo in repositories(body.repository):
            try:
                jobs.append(controller.start_job(action, volume, repo))
            except RuntimeError as exc:
                raise Conflict(str(exc)) from None
            except kubernetes.client.exceptions.ApiException as exc:
                raise Unavailable(f"could not create the Job: {exc.status} {exc.reason}") from None
        return JobsOut(jobs=jobs)

    @api.post(
        "/volumes/<namespace>/<name>/backup",
        summary="Back up now (a Job per repository, or one repository)",
        body=TriggerIn,
        responses={202: JobsOut, 404: NotFound, 409: Conflict, 503: Unavailable},
    )
    def backup(namespace: str, name: str, body: TriggerIn) -> tuple[JobsOut, int]:
        return start("backup", namespace, name, body), 202

    @api.post(
        "/volumes/<namespace>/<name>/drill",
        summary="Run a restore drill now: restore the latest snapshot to scratch space and compare with its manifest",
        body=TriggerIn,
        responses={202: JobsOut, 404: NotFound, 409: Conflict, 503: Unavailable},
    )
    def drill(namespace: str, name: str, body: TriggerIn) -> tuple[JobsOut, int]:
        return start("drill", namespace, name, body), 202

    @api.post(
        "/volumes/<namespace>/<name>/restore",
        summary="Restore a snapshot into a PVC of the volume's namespace; dry_run lists what would be written",
        description="The target PVC must exist and no running pod may use it (a restore under a live app "
        "corrupts it): scale the app down, or restore into a new PVC and point the app at it.",
        body=RestoreIn,
        responses={200: RestoreOut, 202: RestoreOut, 404: NotFound, 409: Conflict, 503: Unavailable},
    )
    def restore(namespace: str, name: str, body: RestoreIn) -> tuple[RestoreOut, int]:
        volume = find(namespace, name)
        if volume.kind != "pvc":
            raise Conflict(
                f"{namespace}/{name} is a k3s server's datastore: it is restored on the node with k3s "
                "--cluster-reset (services/backup/README.md, 'Restoring k3s'), not into a PVC"
            )
        repo = settings.repository_named(repositories(body.repository)[0])
        if controller.pvcs.get(f"{namespace}/{body.into}") is None:
            raise NotFound(f"no PVC {namespace}/{body.into} to restore into: create it first")
        users = [
            str(p["metadata"]["name"])
            for p in controller.pod_dicts()
            if p.get("metadata", {}).get("namespace") == namespace
            and (p.get("status") or {}).get("phase") in ("Pending", "Running")
            and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == body.into
                for v in (p.get("spec") or {}).get("volumes") or []
            )
        ]
        if users:
            raise Conflict(f"PVC {namespace}/{body.into} is in use by {', '.join(users)}: scale it down first")
        with tempfile.TemporaryDirectory() as nowhere:
            plan = runtime.runner.restore(repo, volume.key, Path(nowhere) / body.into, body.snapshot, dry_run=True)
        if not plan.ok:
            raise Unavailable(f"{repo.name}: {plan.outcome.value}: {plan.message} — {plan.advice}")
        files = list(plan.details.get("files", []))
        if body.dry_run:
            return RestoreOut(
                dry_run=True, job=None, snapshot=plan.snapshot, files=files, file_count=plan.files, bytes=plan.bytes
            ), 200
        # the volume's own node when restoring into it; a new PVC binds wherever the scheduler puts the Job
        target = Volume(namespace, volume.name, volume.node if body.into == volume.name else None)
        try:
            job = controller.start_job(
                "restore", target, repo.name, args=("--snapshot", plan.snapshot), restore_into=body.into
            )
        except RuntimeError as exc:
            raise Conflict(str(exc)) from None
        return RestoreOut(
            dry_run=False, job=job, snapshot=plan.snapshot, files=files, file_count=plan.files, bytes=plan.bytes
        ), 202

    return api


def build_runtime(
    settings: Settings,
    *,
    api_client: kubernetes.client.ApiClient | None = None,
    kube_backoff: Backoff | None = None,
    **controller_options: Any,
) -> Runtime:
    controller = Controller(settings, api_client or load_client(), backoff=kube_backoff, **controller_options)
    runner = Runner(
        Restic(settings.restic, timeout=min(settings.timeout_seconds, 600.0)),
        stale_lock_seconds=settings.stale_lock_seconds,
    )
    return Runtime(settings, controller, runner)


def create_app(settings: Settings | None = None, **runtime_options: Any) -> Flask:
    """The app, with the controller started (``runtime_options`` go to :func:`build_runtime`)."""
    settings = settings or load_settings(Settings)
    runtime = build_runtime(settings, **runtime_options)
    app = Flask("homelab_backup")
    app.extensions["settings"] = settings
    app.extensions["homelab_backup"] = runtime
    make_api(runtime).install(app)
    health = install_observability(app, "backup")
    health.add("kubernetes", runtime.controller.ready)
    runtime.start()
    return app
