"""Kubernetes Events: where a user looks first (``kubectl describe``) when a service did not do its job."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import kubernetes.client

__all__ = ["EventRecorder", "ObjectRef"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about. ``uid`` ties the Event to this incarnation of the object."""

    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    api_version: str = "v1"

    @classmethod
    def of(cls, obj: Any, kind: str | None = None, api_version: str | None = None) -> ObjectRef:
        """Build from a client model or a dict; items of a list carry no kind, so pass it for those."""
        if isinstance(obj, dict):
            meta = obj.get("metadata", {})
            name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
            found_kind, found_version = obj.get("kind"), obj.get("apiVersion")
        else:
            meta = obj.metadata
            name, namespace, uid = meta.name, meta.namespace, meta.uid
            found_kind, found_version = getattr(obj, "kind", None), getattr(obj, "api_version", None)
        kind = kind or found_kind
        if not kind or not name:
            raise ValueError("ObjectRef.of needs an object with a name and a kind (pass kind=...)")
        return cls(kind, name, namespace, uid, api_version or found_version or "v1")

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass
class _Seen:
    name: str
    namespace: str
    first: float
    count: int


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    """Writes ``events.k8s.io/v1`` Events about objects, collapsing repeats into one Event's series.

    A reconcile loop that fails every few seconds would otherwise write an Event each time; the API server
    (and ``kubectl describe``) would drown in copies. Repeats of the same (object, type, reason, message)
    within ``series_window`` seconds bump ``series.count`` on the first Event instead.

    Reporting must never make things worse: no method raises. Failures are logged and counted in
    ``failures`` (for a metric), because the caller is usually already handling an error of its own.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        component: str,
        namespace: str = "default",
        *,
        instance: str | None = None,
        series_window: float = 360.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.component = component
        self.namespace = namespace  # where Events about cluster-scoped objects go
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self.failures = 0
        self._api = kubernetes.client.EventsV1Api(api_client)
        self._window = series_window
        self._timeout = request_timeout
        self._seen: OrderedDict[tuple[Any, ...], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def normal(self, obj: ObjectRef, reason: str, message: str, action: str | None = None) -> None:
        self._record("Normal", obj, reason, message, action)

    def warning(self, obj: ObjectRef, reason: str, message: str, action: str | None = None) -> None:
        self._record("Warning", obj, reason, message, action)

    def _record(
        self,
        type_: Literal["Normal", "Warning"],
        obj: ObjectRef,
        reason: str,
        message: str,
        action: str | None,
    ) -> None:
        key = (obj, type_, reason, message)
        now = time.monotonic()
        with self._lock:  # one Event per series even when several threads report the same thing
            try:
                seen = self._seen.get(key)
                if seen is not None and now - seen.first < self._window and self._bump(seen):
                    return
                self._seen[key] = self._create(type_, obj, reason, message, action, now)
                self._seen.move_to_end(key)
                while len(self._seen) > 1024:
                    self._seen.popitem(last=False)
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "could not record a kubernetes event",
                    extra={"object": str(obj), "reason": reason, "error": f"{type(exc).__name__}: {exc}"},
                )

    def _create(self, type_: str, obj: ObjectRef, reason: str, message: str, action: str | None, now: float) -> _Seen:
        namespace = obj.namespace or self.namespace
        name = f"{obj.name}.{uuid.uuid4().hex[:16]}"
        event = kubernetes.client.EventsV1Event(
            metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace),
            event_time=_micro_time(datetime.now(UTC)),
            reporting_controller=self.component,
            reporting_instance=self.instance,
            action=action or reason,
            reason=reason,
            note=message[:1024],  # the API server rejects longer notes
            type=type_,
            regarding=kubernetes.client.V1ObjectReference(
                api_version=obj.api_version,
                kind=obj.kind,
                name=obj.name,
                namespace=obj.namespace,
                uid=obj.uid,
            ),
        )
        self._api.create_namespaced_event(namespace, event, _request_timeout=self._timeout)
        return _Seen(name, namespace, now, 1)

    def _bump(self, seen: _Seen) -> bool:
        """Count a repeat on the existing Event; False if it is gone (expired), so a new one is made."""
        series = {"count": seen.count + 1, "lastObservedTime": _micro_time(datetime.now(UTC))}
        try:
            self._api.patch_namespaced_event(
                seen.name, seen.namespace, {"series": series}, _request_timeout=self._timeout
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        seen.count += 1
        return True
