"""Application-consistent dumps: ``k8up.io/backupcommand`` run *inside the annotated pod's container*.

As k8up does, the runner (in the backup Job) asks the API server to exec ``/bin/sh -c <command>`` in the pod
(``pods/exec`` over a websocket, channel.k8s.io v5/v4) and streams the command's stdout into ``restic backup
--stdin``: the dump is made by the app's own binaries (``pg_dump`` in the postgres image) against its own data.
stderr is kept (its tail explains a failure) and the exit code comes from the API server's status channel; a
command that exits non-zero, or whose status never arrives, fails the backup.

RBAC (the chart's ``exec`` ClusterRole, bound by the controller with a RoleBinding only in namespaces that have
an annotated pod): ``pods: list`` (find the running pod that mounts the PVC and carries the annotation) and
``pods/exec: create, get`` (exec is a websocket GET that the API server authorises as ``get``, and since
Kubernetes 1.30 also as ``create``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

K8UP_COMMAND = "k8up.io/backupcommand"
K8UP_EXTENSION = "k8up.io/file-extension"
K8UP_CONTAINER = "k8up.io/backupcommand-container"

#: How much of the command's stderr is kept for the report (its tail: where the error usually is).
STDERR_LIMIT = 64 * 1024


class DumpPodError(LookupError):
    """No running pod to exec the dump command in (it moved, or lost its annotation): the backup fails."""


@dataclass(frozen=True)
class DumpPod:
    namespace: str
    name: str
    container: str
    command: str
    extension: str = ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def dump_container(pod: Mapping[str, Any]) -> str:
    """k8up's choice: the container the annotation names, else the pod's first container."""
    annotations = _meta(pod).get("annotations") or {}
    containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    return str(annotations.get(K8UP_CONTAINER) or (containers[0] if containers else ""))


def find_dump_pod(api_client: kubernetes.client.ApiClient, namespace: str, claim: str) -> DumpPod:
    """The running pod of ``namespace`` that mounts ``claim`` and carries ``k8up.io/backupcommand`` (first by name)."""
    listed = kubernetes.client.CoreV1Api(api_client).list_namespaced_pod(namespace)
    pods: list[dict[str, Any]] = api_client.sanitize_for_serialization(listed).get("items") or []  # type: ignore[no-untyped-call]
    for pod in sorted(pods, key=lambda p: str(_meta(p).get("name"))):
        meta = _meta(pod)
        annotations = meta.get("annotations") or {}
        if not annotations.get(K8UP_COMMAND) or meta.get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        claims = {
            (v.get("persistentVolumeClaim") or {}).get("claimName")
            for v in (pod.get("spec") or {}).get("volumes") or []
        }
        if claim in claims:
            return DumpPod(
                namespace,
                str(meta.get("name")),
                dump_container(pod),
                str(annotations[K8UP_COMMAND]),
                str(annotations.get(K8UP_EXTENSION) or ""),
            )
    raise DumpPodError(
        f"no running pod in {namespace} mounts {claim} with a {K8UP_COMMAND} annotation (it may have been "
        "rescheduled or lost the annotation); the next run backs up whatever the controller then finds"
    )


@dataclass
class PodExec:
    """One ``/bin/sh -c command`` in a pod: :meth:`chunks` yields its stdout; then ``exit_code`` and ``stderr``.

    ``exit_code`` stays ``None`` when the command never ran or its exit status did not arrive (the connection
    broke): the caller must treat that as a failure, like any non-zero code.
    """

    api_client: kubernetes.client.ApiClient
    pod: DumpPod
    poll_seconds: float = 5.0
    exit_code: int | None = None
    error: str = ""
    stderr: bytes = b""
    _status: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"pod {self.pod.namespace}/{self.pod.name} (container {self.pod.container})"

    def chunks(self) -> Iterator[bytes]:
        from kubernetes.stream import stream

        core = kubernetes.client.CoreV1Api(self.api_client)
        try:
            ws = stream(
                core.connect_get_namespaced_pod_exec,
                self.pod.name,
                self.pod.namespace,
                container=self.pod.container,
                command=["/bin/sh", "-c", self.pod.command],
                stdin=False,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )
        except ApiException as exc:
            self.error = f"the API server refused to exec in {self.where}: {_reason(exc)}"
            return
        try:
            while ws.is_open():
                ws.update(timeout=self.poll_seconds)
                yield from self._drain(ws)
            yield from self._drain(ws)
            raw = ws.read_channel(3)  # the status channel: a metav1.Status once the command has ended
        finally:
            ws.close()
            if ws.sock is not None:
                ws.sock.shutdown()  # close() skips the socket when the server closed first
        self._exit(raw)

    def _drain(self, ws: Any) -> Iterator[bytes]:
        errors = ws.read_stderr()
        if errors:
            self.stderr = (self.stderr + errors)[-STDERR_LIMIT:]
        out = ws.read_stdout()
        if out:
            yield out

    def _exit(self, raw: bytes | str) -> None:
        try:
            status = json.loads(raw or "null")
        except ValueError:
            status = None
        if not isinstance(status, dict):
            self.error = f"the exec stream of {self.where} ended without an exit status (connection lost?)"
            return
        if status.get("status") == "Success":
            self.exit_code = 0
            return
        causes = (status.get("details") or {}).get("causes") or []
        code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
        if code is not None and str(code).isdigit():
            self.exit_code = int(code)
        else:
            self.error = f"the command could not run in {self.where}: {status.get('message') or status}"

    def describe_failure(self) -> str:
        tail = self.stderr.decode(errors="replace").strip()[-300:]
        if self.exit_code is not None:
            return f"pre-backup command in {self.where} exited with {self.exit_code}" + (f": {tail}" if tail else "")
        return self.error + (f": {tail}" if tail else "")


def _reason(exc: ApiException) -> str:
    body = str(exc.reason or exc.body or exc)
    start = body.rfind('{"kind"')
    if start >= 0:
        try:
            return str(json.loads(body[start:]).get("message") or body)
        except ValueError:
            pass
    return body[:300]


__all__ = ["DumpPod", "DumpPodError", "PodExec", "find_dump_pod"]
