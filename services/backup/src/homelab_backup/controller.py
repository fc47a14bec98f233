"""The controller: watches PVCs, Pods, Namespaces and its Jobs; starts the Jobs that are due; reads their reports.

One reconcile (homelab_common's Reconciler: waits for the caches, debounces, resyncs, backs off):

1. select the volumes (opt-outs honoured; annotation mistakes become Warning Events on the object);
2. for each volume and repository, a ``backup`` Job when its schedule slot (schedule + the volume's stable
   jitter) has passed and no Job has run for that slot; a ``drill`` Job on the drill schedule; for each
   repository a ``maintain`` Job (retention ``forget --prune``, then ``check --read-data-subset``) on the check
   schedule. Jobs are named after their slot, so two replicas or a restart never start one twice;
3. finished Jobs' reports (the runner's termination message) become the status, the metrics and an Event.

Only the leader (a Lease) creates Jobs and writes Events; every replica keeps warm caches and serves the API.
The repositories Secret is copied into each namespace that has volumes to back up (a Job can only read Secrets
of its own namespace).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge

from homelab_backup.core import (
    ANNOTATION_SLOT,
    ANNOTATION_TARGET,
    LABEL_ACTION,
    LABEL_MANAGED,
    LABEL_REPOSITORY,
    MANAGER,
    JobSpec,
    Problem,
    Selection,
    Volume,
    build_job,
    job_report,
    select,
    server_volumes,
)
from homelab_backup.restic import Outcome
from homelab_backup.schedule import Cron, due, next_slot
from homelab_backup.settings import Settings
from homelab_common.k8s import Backoff, EventRecorder, Informer, LeaderElector, ObjectRef, Reconciler, TemporaryError

log = logging.getLogger(__name__)

LABELS = ["namespace", "pvc", "repository"]
LAST_SUCCESS = Gauge(
    "homelab_backup_last_success_timestamp_seconds",
    "When the volume's last successful backup to the repository finished (unix time; when first seen until then)",
    LABELS,
)
LAST_DURATION = Gauge("homelab_backup_last_duration_seconds", "How long the last backup took", LABELS)
BYTES_ADDED = Gauge("homelab_backup_last_bytes_added", "Bytes the last backup added to the repository", LABELS)
FILES = Gauge("homelab_backup_last_files", "Files in the volume at the last backup", LABELS)
FAILING = Gauge("homelab_backup_failing", "1 when the volume's last backup to the repository did not succeed", LABELS)
DRILL_OK = Gauge("homelab_backup_drill_ok", "1 when the last restore drill matched the manifest, 0 when not", LABELS)
DRILL_TIME = Gauge("homelab_backup_drill_timestamp_seconds", "When the last restore drill finished", LABELS)
CHECK_OK = Gauge("homelab_backup_check_ok", "1 when the last repository check found no errors", ["repository"])
CHECK_TIME = Gauge("homelab_backup_check_timestamp_seconds", "When the last repository check ran", ["repository"])
SNAPSHOTS = Gauge(
    "homelab_backup_snapshots", "Data snapshots in the repository after the last retention", ["repository"]
)
REPOSITORIES = Gauge("homelab_backup_policy_repositories", "Repositories every volume is backed up to")
OFFSITE = Gauge("homelab_backup_policy_offsite_repositories", "Of those, the offsite ones")
VOLUMES = Gauge("homelab_backup_volumes", "PVCs by state", ["state"])
JOBS = Counter("homelab_backup_jobs_created_total", "Jobs started", ["action"])
REPORTS = Counter("homelab_backup_reports_total", "Job reports read", ["action", "outcome"])
LEADER = Gauge("homelab_backup_is_leader", "1 when this replica starts Jobs")
# Known label values start at 0: the durability SLO's ratio (and its rate over the first failure) exists before any
# report is read.
for _action in ("backup", "drill", "maintain", "restore"):
    for _outcome in Outcome:
        REPORTS.labels(_action, _outcome.value)


@dataclass
class Status:
    """The last report per (action, volume key or "", repository)."""

    reports: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    selection: Selection = field(default_factory=Selection)
    first_seen: dict[str, float] = field(default_factory=dict)
    running: dict[str, dict[str, str]] = field(default_factory=dict)  # job name -> action, target, repository
    last_ok: dict[tuple[str, str], float] = field(default_factory=dict)  # (volume key, repository) -> finished


_SANITIZE: Callable[[Any], Any] = kubernetes.client.ApiClient().sanitize_for_serialization


def _dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    result: dict[str, Any] = _SANITIZE(obj)
    return result


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


class Controller:
    def __init__(
        self,
        settings: Settings,
        api_client: kubernetes.client.ApiClient,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.api_client = api_client
        self.now = now
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
        options: dict[str, Any] = {"resync_period": settings.resync_seconds, "backoff": backoff}
        self.pvcs = Informer(self.core.list_persistent_volume_claim_for_all_namespaces, name="pvcs", **options)
        self.pods = Informer(self.core.list_pod_for_all_namespaces, name="pods", **options)
        self.namespaces = Informer(self.core.list_namespace, name="namespaces", **options)
        self.jobs = Informer(
            self.batch.list_job_for_all_namespaces,
            name="jobs",
            label_selector=f"{LABEL_MANAGED}={MANAGER}",
            **options,
        )
        self.nodes = Informer(self.core.list_node, name="nodes", **options)  # k3s server nodes: the datastore
        self.informers = [self.pvcs, self.pods, self.namespaces, self.jobs, *([self.nodes] if settings.k3s else [])]
        self.recorder = EventRecorder(api_client, component="homelab-backup", namespace=settings.namespace)
        self.spec = JobSpec(
            settings.image,
            settings.secret,
            timeout_seconds=int(settings.timeout_seconds),
            stale_lock_seconds=int(settings.stale_lock_seconds),
            exec_service_account=settings.exec_service_account,
            k3s_snapshot_dir=settings.k3s_snapshot_dir,
            k3s_token_file=settings.k3s_token_file,
        )
        self.status = Status()
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str, str, str]] = set()
        self._started = now()
        self.reconciler = Reconciler(
            self.reconcile,
            name="backup",
            informers=self.informers,
            resync_period=min(settings.resync_seconds, 60.0),
            backoff=backoff or Backoff(initial=1.0, maximum=300.0),
        )
        self.elector = LeaderElector(
            api_client,
            settings.namespace,
            settings.lease_name,
            settings.identity,
            on_started_leading=self._started_leading,
            on_stopped_leading=self.reconciler.trigger,
        )
        for informer in self.informers:
            informer.add_handler(self.reconciler.trigger)
        REPOSITORIES.set(len(settings.repositories))
        OFFSITE.set(sum(1 for r in settings.repositories if r.offsite))

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers:
            informer.start()
        self.elector.start()
        self.reconciler.start()

    def stop(self) -> None:
        self.reconciler.stop()
        self.elector.stop()  # releases the Lease: the other replica takes over at once
        for informer in self.informers:
            informer.stop()

    def is_leader(self) -> bool:
        return self.elector.is_leader

    def _started_leading(self) -> None:
        log.info("leading: this replica starts the Jobs")
        self._reported = set()
        self.reconciler.trigger()

    def pod_dicts(self) -> list[dict[str, Any]]:
        return [_dict(o) for o in self.pods.list()]

    def ready(self) -> str | None:
        if not all(i.has_synced for i in self.informers):
            return "waiting for the first list of PVCs, Pods, Namespaces and Jobs"
        return None

    # -- one reconcile --------------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            self._reconcile()
        except ApiException as exc:
            raise TemporaryError(f"Kubernetes API: {exc.status} {exc.reason}", reason="ApiError") from exc

    def _reconcile(self) -> None:
        leader = self.is_leader()
        LEADER.set(1 if leader else 0)
        selection = select(
            [_dict(o) for o in self.pvcs.list()],
            [_dict(o) for o in self.pods.list()],
            [_dict(o) for o in self.namespaces.list()],
        )
        if self.settings.k3s:
            selection.volumes.extend(server_volumes(_dict(o) for o in self.nodes.list()))
        jobs = [_dict(o) for o in self.jobs.list()]
        pods = [_dict(o) for o in self.pods.list()]
        now = self.now()
        with self._lock:
            for volume in selection.volumes:
                self.status.first_seen.setdefault(volume.key, now.timestamp())
            self.status.selection = selection
            self._read_reports(jobs, pods)
        VOLUMES.labels("selected").set(len(selection.volumes))
        VOLUMES.labels("skipped").set(len(selection.skipped))
        self._metrics(selection)
        if not leader:
            return
        self._report_problems(selection.problems)
        running = sum(1 for j in jobs if not _finished(j))
        for action, target, repository, slot in self.due(selection, jobs, now):
            if running >= self.settings.max_running_jobs:
                break  # the rest waits for the next reconcile: a NAS is not hammered by every volume at once
            if self._create(action, target, repository, slot):
                running += 1

    def due(
        self, selection: Selection, jobs: list[dict[str, Any]], now: datetime
    ) -> list[tuple[str, Volume | None, str, str]]:
        """(action, volume, repository, slot) of every Job that should be running and is not."""
        last: dict[tuple[str, str, str], datetime] = {}
        active: set[tuple[str, str, str]] = set()  # a Job still running: the next waits (no pile-up)
        for job in jobs:
            meta = _meta(job)
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            key = (
                labels.get(LABEL_ACTION, ""),
                annotations.get(ANNOTATION_TARGET, ""),
                labels.get(LABEL_REPOSITORY, ""),
            )
            try:
                slot = datetime.fromisoformat(annotations.get(ANNOTATION_SLOT, ""))
            except ValueError:
                continue
            if key not in last or slot > last[key]:
                last[key] = slot
            if not _finished(job):
                active.add(key)
        out: list[tuple[str, Volume | None, str, str]] = []
        jitter = timedelta(minutes=self.settings.jitter_minutes)
        schedules = {
            "backup": Cron.parse(self.settings.schedule),
            "drill": Cron.parse(self.settings.drill_schedule),
            "maintain": Cron.parse(self.settings.check_schedule),
        }
        for repo in self.settings.repositories:
            for volume in selection.volumes:
                seen = datetime.fromtimestamp(self.status.first_seen.get(volume.key, now.timestamp()), UTC)
                for action in ("backup", "drill"):
                    if (action, volume.key, repo.name) in active:
                        continue
                    since = last.get((action, volume.key, repo.name), seen)
                    volume_slot = due(schedules[action], f"{volume.key}|{action}", jitter, now, since)
                    if volume_slot is not None:
                        out.append((action, volume, repo.name, volume_slot.isoformat()))
            target = f"{self.settings.namespace}/-"
            if ("maintain", target, repo.name) in active:
                continue
            since = last.get(("maintain", target, repo.name), self._started)
            repo_slot = due(schedules["maintain"], f"{repo.name}|maintain", jitter, now, since)
            if repo_slot is not None:
                out.append(("maintain", None, repo.name, repo_slot.isoformat()))
        return out

    def next_backup(self, key: str) -> datetime:
        return next_slot(
            Cron.parse(self.settings.schedule),
            f"{key}|backup",
            timedelta(minutes=self.settings.jitter_minutes),
            self.now(),
        )

    def start_job(
        self,
        action: str,
        volume: Volume | None,
        repository: str,
        *,
        args: tuple[str, ...] = (),
        restore_into: str | None = None,
    ) -> str:
        """A Job now (API-triggered backup, drill or restore); returns its name."""
        slot = self.now().isoformat()
        job = self._create(action, volume, repository, slot, args=args, restore_into=restore_into)
        if job is None:
            raise RuntimeError("the Job already exists")
        return job

    def _create(
        self,
        action: str,
        volume: Volume | None,
        repository: str,
        slot: str,
        *,
        args: tuple[str, ...] = (),
        restore_into: str | None = None,
    ) -> str | None:
        job = build_job(
            action,
            volume,
            repository,
            slot,
            self.spec,
            namespace=self.settings.namespace,
            args=args,
            restore_into=restore_into,
        )
        namespace = job["metadata"]["namespace"]
        if namespace != self.settings.namespace:
            self._copy_secret(namespace)
        if "--from-pod" in job["spec"]["template"]["spec"]["containers"][0]["command"] and volume is not None:
            self._grant_exec(volume.namespace)
        try:
            self.batch.create_namespaced_job(namespace, cast(Any, job))
        except ApiException as exc:
            if exc.status == 409:
                return None  # this slot's Job exists: another replica or an earlier run made it
            raise
        name = str(job["metadata"]["name"])
        JOBS.labels(action).inc()
        with self._lock:
            self.status.running[name] = {
                "action": action,
                "target": job["metadata"]["annotations"][ANNOTATION_TARGET],
                "repository": repository,
            }
        log.info("job started", extra={"job": f"{namespace}/{name}", "action": action, "repository": repository})
        return name

    def _copy_secret(self, namespace: str) -> None:
        """The repositories Secret, copied from our namespace (a Job reads Secrets of its own namespace only)."""
        source = self.core.read_namespaced_secret(self.settings.secret, self.settings.namespace)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.settings.secret,
                "namespace": namespace,
                "labels": {LABEL_MANAGED: MANAGER},
            },
            "type": "Opaque",
            "data": dict(source.data or {}),
        }
        try:
            current = self.core.read_namespaced_secret(self.settings.secret, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_secret(namespace, cast(Any, body))
            return
        if dict(current.data or {}) != body["data"]:
            self.core.replace_namespaced_secret(self.settings.secret, namespace, cast(Any, body))

    def _grant_exec(self, namespace: str) -> None:
        """Let the dump Jobs' service account exec into the pods of ``namespace`` (and of no other namespace).

        A RoleBinding to the chart's ClusterRole (pods list, pods/exec create+get), made only where a pod carries
        ``k8up.io/backupcommand``; the controller may create it because it holds ``bind`` on that one ClusterRole.
        """
        name = self.settings.exec_cluster_role
        body = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_MANAGED: MANAGER}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": self.settings.exec_service_account,
                    "namespace": self.settings.namespace,
                }
            ],
        }
        try:
            self.rbac.create_namespaced_role_binding(namespace, cast(Any, body))
        except ApiException as exc:
            if exc.status != 409:  # it exists: made by an earlier run
                raise

    # -- reports --------------------------------------------------------------------------------------------------

    def _read_reports(self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            by_namespace.setdefault(str(_meta(pod).get("namespace")), []).append(pod)
        running: dict[str, dict[str, str]] = {}
        for job in sorted(jobs, key=lambda j: str((_meta(j).get("annotations") or {}).get(ANNOTATION_SLOT, ""))):
            meta = _meta(job)
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            action, repository = labels.get(LABEL_ACTION, ""), labels.get(LABEL_REPOSITORY, "")
            target = annotations.get(ANNOTATION_TARGET, "")
            if not _finished(job):
                running[str(meta.get("name"))] = {"action": action, "target": target, "repository": repository}
                continue
            report = job_report(job, by_namespace.get(str(meta.get("namespace")), []))
            if report is None:
                continue
            key = (action, target if action != "maintain" else "", repository)
            previous = self.status.reports.get(key)
            report = {**report, "job": str(meta.get("name")), "slot": annotations.get(ANNOTATION_SLOT, "")}
            if previous is not None and previous.get("job") == report["job"]:
                continue
            if previous is not None and str(previous.get("slot", "")) > str(report["slot"]):
                continue
            self.status.reports[key] = report
            if action == "backup" and report.get("outcome") == "ok":
                ok_key = (target, repository)
                finished = float(report.get("finished") or 0)
                self.status.last_ok[ok_key] = max(finished, self.status.last_ok.get(ok_key, 0.0))
            REPORTS.labels(action, str(report.get("outcome"))).inc()
            self._event(job, action, target, repository, report)
        self.status.running = running

    def _event(self, job: Mapping[str, Any], action: str, target: str, repository: str, report: dict[str, Any]) -> None:
        if not self.is_leader():
            return
        ok = report.get("outcome") == "ok"
        ref = self._pvc_ref(target) or ObjectRef.of(job, kind="Job", api_version="batch/v1")
        reason = {"backup": "Backup", "drill": "RestoreDrill", "maintain": "Check", "restore": "Restore"}.get(
            action, "Backup"
        )
        message = f"{action} to {repository}: {report.get('outcome')}: {report.get('message', '')}"
        if not ok and report.get("advice"):
            message += f" — {report['advice']}"
        try:
            if ok:
                self.recorder.normal(ref, f"{reason}Succeeded", message[:1000])
            else:
                self.recorder.warning(ref, f"{reason}Failed", message[:1000])
        except Exception:
            log.exception("could not write an Event", extra={"target": target})

    def _pvc_ref(self, target: str) -> ObjectRef | None:
        obj = self.pvcs.get(target) if target and not target.endswith("/-") else None
        return ObjectRef.of(obj, kind="PersistentVolumeClaim") if obj is not None else None

    def _report_problems(self, problems: list[Problem]) -> None:
        current = {(p.kind, p.namespace, p.name, p.reason) for p in problems}
        for problem in problems:
            key = (problem.kind, problem.namespace, problem.name, problem.reason)
            if key in self._reported:
                continue
            log.warning(
                "annotation mistake", extra={"object": f"{problem.namespace}/{problem.name}", "reason": problem.reason}
            )
            informer = self.namespaces if problem.kind == "Namespace" else self.pvcs
            obj = informer.get(problem.name if problem.kind == "Namespace" else f"{problem.namespace}/{problem.name}")
            if obj is not None:
                try:
                    self.recorder.warning(ObjectRef.of(obj, kind=problem.kind), "InvalidAnnotation", problem.reason)
                except Exception:
                    log.exception("could not write an Event")
        self._reported = current

    def _metrics(self, selection: Selection) -> None:
        with self._lock:
            reports = dict(self.status.reports)
            first_seen = dict(self.status.first_seen)
            last_ok = dict(self.status.last_ok)
        for volume in selection.volumes:
            for repo in self.settings.repositories:
                labels = (volume.namespace, volume.name, repo.name)
                backup = reports.get(("backup", volume.key, repo.name))
                if backup is not None:
                    FAILING.labels(*labels).set(0 if backup.get("outcome") == "ok" else 1)
                    if backup.get("outcome") == "ok":
                        LAST_DURATION.labels(*labels).set(float(backup.get("seconds", 0)))
                        BYTES_ADDED.labels(*labels).set(float(backup.get("bytes_added", 0)))
                        FILES.labels(*labels).set(float(backup.get("files", 0)))
                success = last_ok.get((volume.key, repo.name)) or first_seen.get(volume.key, time.time())
                LAST_SUCCESS.labels(*labels).set(success)
                drill = reports.get(("drill", volume.key, repo.name))
                if drill is not None:
                    DRILL_OK.labels(*labels).set(1 if drill.get("outcome") == "ok" else 0)
                    DRILL_TIME.labels(*labels).set(float(drill.get("finished", 0)))
        for repo in self.settings.repositories:
            check = reports.get(("maintain", "", repo.name))
            if check is not None:
                CHECK_OK.labels(repo.name).set(1 if check.get("outcome") == "ok" else 0)
                CHECK_TIME.labels(repo.name).set(float(check.get("finished", 0)))
                if "snapshots" in (check.get("details") or {}):
                    SNAPSHOTS.labels(repo.name).set(float(check["details"]["snapshots"]))


def _finished(job: Mapping[str, Any]) -> bool:
    status = job.get("status") or {}
    return bool(status.get("succeeded") or status.get("failed"))
