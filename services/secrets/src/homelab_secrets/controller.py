"""The controller: Secret and workload watches → ``core.decide`` per Secret → patches, hooks, Events, metrics.

Everything loops through homelab_common.k8s: informers keep the caches, the Reconciler runs a pass when something
changed (debounced), the LeaderElector starts the Reconciler only on the Lease holder, so exactly one replica writes.
A pass also schedules itself for the next moment something becomes due (a rotation, the end of a grace window, a
hook retry), so a rotation happens on time without a short resync.

Memory: the Secret informer keeps, per Secret, only its identity and annotations, plus the decoded data of Secrets
that carry our annotations; of every other Secret only the SHA-256 digests of short values, for the audit.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
from prometheus_client import Counter, Gauge

from homelab_common.k8s import Backoff, EventRecorder, Informer, LeaderElector, ObjectRef, Reconciler, TemporaryError
from homelab_secrets import audit
from homelab_secrets import spec as ann
from homelab_secrets.core import (
    Decision,
    HookCall,
    Observed,
    Patch,
    decide,
    finish_hooked_rotation,
    hook_failed,
    rfc3339,
)

log = logging.getLogger(__name__)

GENERATED = Counter("homelab_secrets_generated_total", "Secret keys filled with a new value", ["type"])
ROTATED = Counter("homelab_secrets_rotated_total", "Secret keys rotated (old value kept as <key>.previous)")
REFUSED = Gauge("homelab_secrets_refused", "Annotated Secrets refused: they hold values not made for us")
REFUSALS = Counter("homelab_secrets_refusals_total", "Times a foreign Secret was refused (once per Secret)")
INVALID = Gauge("homelab_secrets_invalid", "Annotated Secrets whose annotations cannot be read")
ERRORS = Counter("homelab_secrets_errors_total", "Errors by kind", ["kind"])
HOOK_FAILURES = Counter("homelab_secrets_hook_failures_total", "Rotation hooks that failed (old value kept)", ["hook"])
HOOK_PENDING = Gauge("homelab_secrets_hook_pending", "Rotations waiting for their hook to succeed")
NEXT_ROTATION = Gauge(
    "homelab_secrets_next_rotation_timestamp_seconds", "When a Secret is next rotated", ["namespace", "secret"]
)
MANAGED = Gauge("homelab_secrets_managed", "Annotated Secrets this controller fills")
DEFAULTS = Gauge("homelab_secrets_default_passwords", "Secret keys holding an upstream default password")
RESTARTS = Counter("homelab_secrets_workload_restarts_total", "Pod templates bumped after a rotation")
COPIED = Counter("homelab_secrets_copied_total", "Copies (copy-to) brought in step with their Secret")
LEADER = Gauge("homelab_secrets_is_leader", "1 on the replica that holds the Lease and writes")
LAST_PASS = Gauge("homelab_secrets_last_pass_timestamp_seconds", "When the leader last finished a pass")
for _hook in ann.HOOKS:  # known label values start at 0: the alert's increase() sees the first failure
    HOOK_FAILURES.labels(_hook)

#: Our writes' field manager: the fields it owns (values, status annotations) are never in Argo CD's manifests.
FIELD_MANAGER = "homelab-secrets"
WORKLOAD_KINDS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


@dataclass(frozen=True)
class SecretRecord:
    """The informer's cached form of a Secret (see the module docstring for what is kept)."""

    observed: Observed
    digests: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadRecord:
    kind: str
    namespace: str
    name: str
    uid: str
    reloads: tuple[str, ...]
    stamp: str  # the pod template's restarted-for annotation


def _timestamp(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else 0.0


def secret_record(secret: Any) -> SecretRecord:
    meta = secret.metadata
    annotations = dict(meta.annotations or {})
    decoded = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    annotated = ann.is_annotated(annotations) or ann.COPY_OF in annotations  # a copy: kept to compare
    observed = Observed(
        meta.namespace or "",
        meta.name or "",
        meta.uid or "",
        meta.resource_version or "",
        annotations if annotated else {},
        decoded if annotated else {},
        _timestamp(meta.creation_timestamp),
    )
    return SecretRecord(observed, audit.digests(decoded))


def workload_record(kind: str) -> Callable[[Any], WorkloadRecord]:
    def transform(obj: Any) -> WorkloadRecord:
        meta = obj.metadata
        annotations = meta.annotations or {}
        template = obj.spec.template.metadata if obj.spec and obj.spec.template else None
        pod_annotations = (template.annotations if template else None) or {}
        names: list[str] = []
        # on the workload, or on its pod template for charts that annotate only pods (Woodpecker's agent)
        for key in ann.RELOAD:
            for where in (annotations, pod_annotations):
                names += [n.strip() for n in where.get(key, "").split(",") if n.strip()]
        stamp = pod_annotations.get(ann.RESTARTED_FOR, "")
        return WorkloadRecord(
            kind, meta.namespace or "", meta.name or "", meta.uid or "", tuple(sorted(set(names))), stamp
        )

    return transform


def restart_stamp(rotations: dict[str, str]) -> str:
    """The pod-template annotation for a workload: a digest of when each Secret it reloads on was last rotated.

    It depends only on the rotated-at annotations, so it is the same on every pass (no restart loop) and changes
    exactly when one of those Secrets rotates; "" (nothing written) while none has rotated, so the first fill of a
    Secret never restarts anything.
    """
    rotated = sorted((name, at) for name, at in rotations.items() if at)
    if not rotated:
        return ""
    return hashlib.sha256(";".join(f"{n}={a}" for n, a in rotated).encode()).hexdigest()[:16]


def _patch_body(obs: Observed, patch: Patch) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"resourceVersion": obs.resource_version}}
    if patch.annotations:
        body["metadata"]["annotations"] = dict(patch.annotations)
    if patch.data:
        body["data"] = {k: None if v is None else base64.b64encode(v).decode() for k, v in patch.data.items()}
    return body


class Controller:
    """One pass over every cached Secret (the leader's job), plus the API's view of them (any replica)."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        namespace: str = "",
        hooks: dict[str, Callable[[HookCall], None]] | None = None,
        hook_retry: float = 300.0,
        run_audit: bool = True,
        restart_workloads: bool = True,
        lease: tuple[str, str, str] = ("default", "homelab-secrets", "homelab-secrets"),
        debounce: float = 0.2,
        resync: float = 300.0,
        backoff: Backoff | None = None,
        backoff_max: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from homelab_secrets.hooks import default_hooks

        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.hooks = hooks if hooks is not None else default_hooks()
        self.hook_retry = hook_retry
        self.run_audit = run_audit
        self.restart_workloads = restart_workloads
        self.clock = clock
        options: dict[str, Any] = {"resync_period": resync, "backoff": backoff}
        if namespace:
            self.secrets = Informer(
                self.core.list_namespaced_secret, name="secrets", namespace=namespace,
                transform=secret_record, **options,
            )  # fmt: skip
        else:
            self.secrets = Informer(
                self.core.list_secret_for_all_namespaces, name="secrets", transform=secret_record, **options
            )
        self.workloads: list[Informer] = []
        if restart_workloads:
            for kind, plural in WORKLOAD_KINDS.items():
                method = "list_namespaced_" if namespace else "list_"
                suffix = "" if namespace else "_for_all_namespaces"
                list_func = getattr(self.apps, f"{method}{kind_snake(kind)}{suffix}")
                scope: dict[str, Any] = {"namespace": namespace} if namespace else {}
                self.workloads.append(
                    Informer(list_func, name=plural, transform=workload_record(kind), **scope, **options)
                )
        self.recorder = EventRecorder(api_client, component="homelab-secrets", namespace=lease[0])
        self.reconciler = Reconciler(
            self.reconcile,
            name="secrets",
            informers=self.informers,
            debounce=debounce,
            resync_period=resync,
            backoff=backoff or Backoff(initial=0.5, maximum=backoff_max),
        )
        self.elector = LeaderElector(
            api_client,
            lease[0],
            lease[1],
            lease[2],
            on_started_leading=self._started_leading,
            on_stopped_leading=self._stopped_leading,
        )
        for informer in self.informers:
            informer.add_handler(self.reconciler.trigger)
        self.passes = 0
        self.last_pass: float | None = None
        self.defaults_found: list[tuple[str, str, str]] = []  # (namespace/name, key, app)
        self._reported: set[tuple[str, str, str]] = set()
        self._wake: threading.Timer | None = None
        self._written: dict[str, str] = {}  # namespace/name -> the resourceVersion our last write replaced
        self._lock = threading.Lock()

    @property
    def informers(self) -> list[Informer]:
        return [self.secrets, *self.workloads]

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers:
            informer.start()
        self.elector.start()

    def stop(self) -> None:
        self.elector.stop()  # releases the Lease (and stops the reconciler through the callback)
        self.reconciler.stop()
        self._cancel_wake()
        for informer in self.informers:
            informer.stop()

    def is_leader(self) -> bool:
        return self.elector.is_leader

    def _started_leading(self) -> None:
        log.info("leading: this replica fills and rotates Secrets")
        LEADER.set(1)
        self._reported = set()  # a new leader reports every current problem again
        self.reconciler.start()

    def _stopped_leading(self) -> None:
        LEADER.set(0)
        self._cancel_wake()
        self.reconciler.stop()

    def ready(self) -> str | None:
        if all(i.has_synced for i in self.informers):
            return None
        return "waiting for the first list of Secrets and workloads"

    # -- one pass -----------------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """The Reconciler's step: every Secret, then the audit and the restarts. A failed write is retried."""
        with self._lock:
            now = self.clock()
            failed: list[str] = []
            due: list[float] = []
            managed = refused = invalid = pending = 0
            seen: set[tuple[str, str]] = set()
            sources: list[tuple[Observed, Decision]] = []
            for record in self.secrets.list():
                obs = record.observed
                if not obs.annotations:
                    continue
                if self._written.get(obs.key) == obs.resource_version:
                    continue  # our write is not in the cache yet: its watch event triggers the next pass
                self._written.pop(obs.key, None)
                try:
                    decision = self._handle(obs, now)
                except kubernetes.client.ApiException as exc:
                    failed.append(f"{obs.key}: HTTP {exc.status} {exc.reason}")
                    continue
                managed += decision.action not in ("refuse", "invalid", "ignore")
                refused += decision.action == "refuse"
                invalid += decision.action == "invalid"
                pending += decision.action == "hook"
                if decision.spec is not None and decision.spec.copy_to and decision.action == "none":
                    sources.append((obs, decision))  # in step with its spec: its current values are final
                if decision.next_check is not None:
                    due.append(decision.next_check)
                if decision.next_rotation is not None:
                    NEXT_ROTATION.labels(obs.namespace, obs.name).set(decision.next_rotation)
                    seen.add((obs.namespace, obs.name))
            self._forget_rotation_gauges(seen)
            MANAGED.set(managed)
            REFUSED.set(refused)
            INVALID.set(invalid)
            HOOK_PENDING.set(pending)
            for obs, decision in sources:
                failed += self._copy(obs, decision)
            if self.run_audit:
                self._audit()
            if self.restart_workloads:
                failed += self._restart_workloads()
            self.passes += 1
            self.last_pass = now
            LAST_PASS.set(now)
            self._schedule(min(due) if due else None, now)
            if failed:
                ERRORS.labels("write").inc(len(failed))
                raise TemporaryError("writes failed, retrying: " + "; ".join(failed[:5]), retry_after=1.0)

    def _handle(self, obs: Observed, now: float) -> Decision:
        decision = decide(obs, now, hook_retry=self.hook_retry)
        ref = ObjectRef("Secret", obs.name, obs.namespace, obs.uid)
        if decision.action == "refuse":
            if self._once(obs.key, "Refused", decision.reason):
                REFUSALS.inc()
                log.warning("secret refused", extra={"object": obs.key, "reason": decision.reason})
                self.recorder.warning(ref, "Refused", decision.reason)
            return decision
        if decision.action == "invalid":
            if self._once(obs.key, "InvalidAnnotation", decision.reason):
                ERRORS.labels("invalid").inc()
                log.warning("invalid annotations", extra={"object": obs.key, "reason": decision.reason})
                self.recorder.warning(ref, "InvalidAnnotation", decision.reason)
            if decision.patch:
                self._write(obs, decision.patch)
            return decision
        if decision.action == "hook":
            self._run_hook(obs, decision, now, ref)
            return decision
        self._forget(obs.key)
        if decision.action == "write":
            self._write(obs, decision.patch)
            kind = decision.spec.type if decision.spec else "string"
            if decision.generated:  # no Event: the generated-at and status annotations say it, at no extra write
                GENERATED.labels(kind).inc(len(decision.generated))
                log.info("secret filled", extra={"object": obs.key, "keys": list(decision.generated)})
            if decision.rotated:
                ROTATED.inc(len(decision.rotated))
                log.info("secret rotated", extra={"object": obs.key, "keys": list(decision.rotated)})
                self.recorder.normal(
                    ref, "Rotated", f"rotated {', '.join(decision.rotated)}; the old values stay as <key>.previous"
                )
        return decision

    def _run_hook(self, obs: Observed, decision: Decision, now: float, ref: ObjectRef) -> None:
        call, spec = decision.hook, decision.spec
        assert call is not None
        assert spec is not None
        hook = self.hooks.get(call.hook)
        try:
            if hook is None:
                raise RuntimeError(f"no {call.hook} hook in this build")
            hook(call)
        except Exception as exc:
            message = str(exc)
            HOOK_FAILURES.labels(call.hook).inc()
            log.error("rotation hook failed; the current value stays", extra={"object": obs.key, "error": message})
            self.recorder.warning(
                ref,
                "RotationHookFailed",
                f"{call.hook} did not take the new password, so the Secret keeps the current one ({message}); "
                f"retrying in {self.hook_retry:.0f}s",
            )
            self._write(obs, hook_failed(obs, message, now))
            decision.next_check = now + self.hook_retry
            return
        self._write(obs, finish_hooked_rotation(obs, spec, now))
        ROTATED.inc()
        decision.rotated = (spec.password_key,)
        decision.next_rotation = now + spec.rotate_every if spec.rotate_every is not None else None
        log.info("secret rotated through its hook", extra={"object": obs.key, "hook": call.hook})
        self.recorder.normal(ref, "Rotated", f"{call.hook} took the new password first; the old one stays as .previous")

    def _write(self, obs: Observed, patch: Patch) -> None:
        """A merge patch guarded by the resourceVersion we decided on: a concurrent change means decide again.

        Until the watch brings the written version, the cached one is stale: deciding on it again would generate
        values twice and lose the race with our own write (a 409), so the Secret is skipped until then.
        """
        self.core.patch_namespaced_secret(
            obs.name, obs.namespace, _patch_body(obs, patch), field_manager=FIELD_MANAGER, _request_timeout=30
        )
        self._written[obs.key] = obs.resource_version

    # -- copies -------------------------------------------------------------------------------------------------

    def _copy(self, obs: Observed, decision: Decision) -> list[str]:
        """Keep each copy-to Secret's copy-keys equal to this Secret's current values (after a fill or a rotation).

        Both sides must agree: the source names the copy (copy-to, in git) and the copy names the source (its
        copy-of annotation, set by whoever made it), so a Secret in one namespace cannot be made to write into
        another that did not ask for it. The copy's other keys are left alone; nothing is ever created.
        """
        spec = decision.spec
        assert spec is not None
        ref = ObjectRef("Secret", obs.name, obs.namespace, obs.uid)
        absent = [k for k in spec.copy_keys if not obs.data.get(k)]
        if absent:  # a key neither generated nor set by a person: copying part of a login would break it
            message = f"copy-keys names {', '.join(absent)}, which this Secret does not hold: nothing is copied"
            if self._once(f"{obs.key}>copy-keys", "CopyKeyMissing", message):
                ERRORS.labels("copy").inc()
                self.recorder.warning(ref, "CopyKeyMissing", message)
            return []
        failed: list[str] = []
        for target in spec.copy_to:
            record = self.secrets.get(target)
            if record is None or record.observed.annotations.get(ann.COPY_OF) != obs.key:
                reason = "CopyRefused" if record is not None else "CopyMissing"
                message = (
                    f"{target} does not name {obs.key} in its {ann.COPY_OF} annotation: nothing is copied into it"
                    if record is not None
                    else f"copy-to {target}: no such Secret (it is never created here; its owner makes it, "
                    f"annotated {ann.COPY_OF}: {obs.key})"
                )
                if self._once(f"{obs.key}>{target}", reason, message):  # not forgotten by the next pass
                    ERRORS.labels("copy").inc()
                    log.warning("copy not made", extra={"object": obs.key, "reason": message})
                    self.recorder.warning(ref, reason, message)
                continue
            copy = record.observed
            if self._written.get(copy.key) == copy.resource_version:
                continue  # our last write is not in the cache yet
            changed: dict[str, bytes | None] = {
                k: obs.data[k] for k in spec.copy_keys if copy.data.get(k) != obs.data[k]
            }
            if not changed:
                continue
            try:
                self._write(copy, Patch(data=changed))
            except kubernetes.client.ApiException as exc:
                failed.append(f"copy {copy.key}: HTTP {exc.status} {exc.reason}")
                continue
            COPIED.inc()
            log.info("copy updated", extra={"object": copy.key, "source": obs.key, "keys": sorted(changed)})
            self.recorder.normal(
                ObjectRef("Secret", copy.name, copy.namespace, copy.uid),
                "Copied",
                f"{', '.join(sorted(changed))} copied from {obs.key}",
            )
        return failed

    # -- the audit ----------------------------------------------------------------------------------------------

    def _audit(self) -> None:
        found: list[tuple[str, str, str]] = []
        for record in self.secrets.list():
            obs = record.observed
            for key, default in audit.findings(record.digests):
                found.append((obs.key, key, default.app))
                message = (
                    f"key {key} holds {default.app}'s upstream default password ({default.where}); "
                    "replace it with a generated one"
                )
                if self._once(obs.key, "DefaultPassword", message):
                    log.warning("default password found", extra={"object": obs.key, "key": key, "app": default.app})
                    ref = ObjectRef("Secret", obs.name, obs.namespace, obs.uid)
                    self.recorder.warning(ref, "DefaultPassword", message)
        self.defaults_found = found
        DEFAULTS.set(len(found))

    # -- restarts -----------------------------------------------------------------------------------------------

    def _restart_workloads(self) -> list[str]:
        failed: list[str] = []
        for informer in self.workloads:
            for workload in informer.list():
                if not workload.reloads:
                    continue
                rotations = {}
                for name in workload.reloads:
                    record = self.secrets.get(f"{workload.namespace}/{name}")
                    annotations = record.observed.annotations if record is not None else {}
                    rotations[name] = annotations.get(ann.ROTATED_AT, "")
                stamp = restart_stamp(rotations)
                if not stamp or stamp == workload.stamp:
                    continue
                body = {"spec": {"template": {"metadata": {"annotations": {ann.RESTARTED_FOR: stamp}}}}}
                patch = getattr(self.apps, f"patch_namespaced_{kind_snake(workload.kind)}")
                try:
                    patch(workload.name, workload.namespace, body, field_manager=FIELD_MANAGER, _request_timeout=30)
                except kubernetes.client.ApiException as exc:
                    failed.append(f"{workload.kind} {workload.namespace}/{workload.name}: HTTP {exc.status}")
                    continue
                RESTARTS.inc()
                ref = ObjectRef(workload.kind, workload.name, workload.namespace, workload.uid, "apps/v1")
                rotated = ", ".join(n for n, at in sorted(rotations.items()) if at)
                self.recorder.normal(ref, "SecretRotated", f"restarting: reloads on rotated Secret(s) {rotated}")
                log.info(
                    "workload restarted", extra={"object": f"{workload.kind} {workload.namespace}/{workload.name}"}
                )
        return failed

    # -- bookkeeping --------------------------------------------------------------------------------------------

    def _once(self, key: str, reason: str, message: str) -> bool:
        """True the first time this problem is seen (Events and logs once per problem, not per pass)."""
        item = (key, reason, message)
        if item in self._reported:
            return False
        self._reported.add(item)
        return True

    def _forget(self, key: str) -> None:
        self._reported = {item for item in self._reported if item[0] != key or item[1] == "DefaultPassword"}

    def _forget_rotation_gauges(self, seen: set[tuple[str, str]]) -> None:
        for labels in list(NEXT_ROTATION._metrics):  # prometheus_client has no public listing
            if labels not in seen:
                NEXT_ROTATION.remove(*labels)

    def _schedule(self, due: float | None, now: float) -> None:
        self._cancel_wake()
        if due is None:
            return
        delay = max(0.05, due - now + 0.05)
        timer = threading.Timer(delay, self.reconciler.trigger)
        timer.daemon = True
        timer.start()
        self._wake = timer

    def _cancel_wake(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    # -- the API's side -----------------------------------------------------------------------------------------

    def request_rotation(self, namespace: str, name: str) -> str:
        """Ask for a rotation by annotating the Secret (any replica may); the leader rotates it on its next pass and
        removes the annotation with the same write, so a request is honoured exactly once."""
        record = self.secrets.get(f"{namespace}/{name}")
        if record is None:
            raise LookupError(f"{namespace}/{name}")
        at = rfc3339(self.clock())
        body = {"metadata": {"annotations": {ann.ROTATE_REQUESTED: at}}}
        self.core.patch_namespaced_secret(name, namespace, body, field_manager=FIELD_MANAGER, _request_timeout=30)
        return at


def kind_snake(kind: str) -> str:
    return {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}[kind]
