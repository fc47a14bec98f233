"""List + watch with a local cache: the one way our services observe Kubernetes objects.

The loop is client-go's reflector, simplified for a homelab's scale: list, then watch from the list's
resourceVersion; relist on 410 Gone, on a periodic resync, and after any error (which costs one extra list but
never misses a deletion that happened while we were not watching). Errors never end the loop: they are logged
and retried with exponential backoff, because a service that crash-loops on an API blip takes its dependants
down with it.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import kubernetes.client
import kubernetes.watch
from prometheus_client import Gauge

from homelab_common.k8s.backoff import Backoff

__all__ = ["Change", "Informer", "object_key"]

log = logging.getLogger(__name__)

#: Watch freshness, for the KubernetesWatchStale alert: a list succeeds at least every resync period when healthy.
SYNCED = Gauge("homelab_k8s_informer_synced", "1 once the informer's first list has loaded", ["informer"])
LAST_LIST = Gauge(
    "homelab_k8s_informer_last_list_timestamp_seconds", "When the informer last listed successfully", ["informer"]
)

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class Change:
    """One change to the cache; ``old`` is the previous state for MODIFIED and DELETED."""

    type: ChangeType
    key: str
    obj: Any
    old: Any = None


def _metadata(obj: Any) -> Any:
    return obj.get("metadata", {}) if isinstance(obj, dict) else obj.metadata


def _meta_field(obj: Any, model_name: str, json_name: str) -> Any:
    meta = _metadata(obj)
    return meta.get(json_name) if isinstance(meta, dict) else getattr(meta, model_name, None)


def object_key(obj: Any) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), for both client models and dicts."""
    namespace = _meta_field(obj, "namespace", "namespace")
    name = _meta_field(obj, "name", "name")
    return f"{namespace}/{name}" if namespace else str(name)


class _GoneError(Exception):
    """The resourceVersion we watch from is too old: only a fresh list can tell us the current state."""


class Informer:
    """Keeps a thread-safe cache of the objects a list function returns, and tells handlers what changed.

    ``list_func`` is a bound list method of the official client (``CoreV1Api(c).list_namespaced_pod``) and
    ``list_kwargs`` its arguments (``namespace="dns"``, ``label_selector=...``); passing them apart, rather
    than as a ``functools.partial``, lets the client find the model type for watch events.

    Handlers run on the informer's thread after the cache was updated; a handler that raises is logged and
    does not stop the loop. Keep them quick — a :class:`Reconciler`'s ``trigger`` is the typical handler.

    ``transform`` (client-go's ``SetTransform``) is applied to every listed or watched object before it is
    cached, compared and handed to handlers: keep only the fields the service reads, and a cache of every Pod in
    the cluster stays small. An update that changes nothing the transform keeps is then no change at all.
    """

    def __init__(
        self,
        list_func: Callable[..., Any],
        *,
        name: str | None = None,
        resync_period: float = 300.0,
        watch_timeout: float = 240.0,
        request_timeout: float = 30.0,
        backoff: Backoff | None = None,
        transform: Callable[[Any], Any] | None = None,
        **list_kwargs: Any,
    ) -> None:
        self.name = name or getattr(list_func, "__name__", "informer")
        self._transform: Callable[[Any], Any] = transform or _identity
        self._list_func = list_func
        self._list_kwargs = list_kwargs
        self._resync_period = resync_period
        self._watch_timeout = watch_timeout
        self._request_timeout = request_timeout
        self._backoff = backoff or Backoff()
        self._handlers: list[Callable[[Change], None]] = []
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None  # the open watch response, so stop() can unblock its read
        self._sanitize: Callable[[Any], Any] = kubernetes.client.ApiClient().sanitize_for_serialization
        SYNCED.labels(self.name).set(0)

    # -- the cache -------------------------------------------------------------------------------------

    def get(self, key: str) -> Any | None:
        """The cached object for ``namespace/name`` (or ``name``), or None."""
        with self._lock:
            return self._cache.get(key)

    def list(self) -> list[Any]:
        """A snapshot of all cached objects (safe to iterate while the cache changes)."""
        with self._lock:
            return list(self._cache.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return sorted(self._cache)

    @property
    def has_synced(self) -> bool:
        """True once the first list has been loaded: before that, an empty cache means "unknown"."""
        return self._synced.is_set()

    @property
    def failures(self) -> int:
        """Consecutive failed attempts since the API last answered well; a readiness probe can use it."""
        return self._backoff.failures

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def add_handler(self, handler: Callable[[Change], None]) -> None:
        """Call ``handler`` for every change; add it before ``start()`` so it does not miss the first list."""
        self._handlers.append(handler)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Informer:
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly: an open watch is cut (its socket shut down) rather than waited out.

        A list request in flight is not cut; it ends within ``request_timeout``, after ``timeout`` the
        (daemon) thread is left to finish on its own.
        """
        with self._lock:
            self._stopping.set()
            response = self._response
        if response is not None:
            _shutdown(response)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Informer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------------------------------

    def _run(self) -> None:
        resource_version: str | None = None
        next_resync = 0.0
        just_expired = False
        while not self._stopping.is_set():
            try:
                if resource_version is None or time.monotonic() >= next_resync:
                    resource_version = self._relist()
                    next_resync = time.monotonic() + self._resync_period
                resource_version = self._watch(resource_version, next_resync)
                self._backoff.reset()  # only a watch that ended cleanly proves the API is healthy again
                just_expired = False
            except _GoneError:
                log.info("watch expired, relisting", extra={"informer": self.name})
                resource_version = None
                if just_expired:  # expiring again straight after a fresh list: do not spin on it
                    self._stopping.wait(self._backoff.next())
                just_expired = True
            except Exception as exc:
                if self._stopping.is_set():
                    break
                delay = self._backoff.next()
                log.warning(
                    "kubernetes API error, retrying",
                    extra={"informer": self.name, "error": _describe(exc), "retry_in": round(delay, 2)},
                )
                resource_version = None
                self._stopping.wait(delay)
        log.debug("informer stopped", extra={"informer": self.name})

    def _relist(self) -> str | None:
        result = self._list_func(**self._list_kwargs, _request_timeout=self._request_timeout)
        items = result["items"] if isinstance(result, dict) else result.items
        fresh = {object_key(item): self._transform(item) for item in items or []}
        changes: builtins.list[Change] = []
        with self._lock:
            for key, old in self._cache.items():
                if key not in fresh:
                    changes.append(Change("DELETED", key, old, old))
            for key, item in fresh.items():
                old = self._cache.get(key)
                if old is None:
                    changes.append(Change("ADDED", key, item))
                elif self._differs(old, item):
                    changes.append(Change("MODIFIED", key, item, old))
            self._cache = fresh
        self._synced.set()
        SYNCED.labels(self.name).set(1)
        LAST_LIST.labels(self.name).set_to_current_time()
        log.debug("listed", extra={"informer": self.name, "objects": len(fresh), "changes": len(changes)})
        self._notify(changes)
        rv = _metadata(result)
        rv = rv.get("resourceVersion") if isinstance(rv, dict) else getattr(rv, "resource_version", None)
        return str(rv) if rv else None

    def _watch(self, resource_version: str | None, until: float) -> str | None:
        """Apply watch events until the server ends the stream; return where to resume (None = relist)."""
        timeout = max(1, min(int(self._watch_timeout), int(until - time.monotonic()) + 1))
        watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        stream = watch.stream(  # type: ignore[no-untyped-call]
            self._opening(self._list_func),
            **self._list_kwargs,
            resource_version=resource_version,
            timeout_seconds=timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(self._request_timeout, timeout + self._request_timeout),
        )
        try:
            for event in stream:
                if self._stopping.is_set():
                    break
                kind = event["type"]
                raw = event["raw_object"]
                rv = raw.get("metadata", {}).get("resourceVersion") if isinstance(raw, dict) else None
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(kind, event["object"])
                if rv:
                    resource_version = str(rv)
        except kubernetes.client.ApiException as exc:
            if exc.status == 410:
                raise _GoneError from exc
            raise
        finally:
            stream.close()
            with self._lock:
                self._response = None
        return resource_version

    def _opening(self, list_func: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap the list function so the watch response is registered where stop() can cut it."""

        def call(*args: Any, **kwargs: Any) -> Any:
            response = list_func(*args, **kwargs)
            with self._lock:
                if self._stopping.is_set():
                    _shutdown(response)
                self._response = response
            return response

        # kubernetes.watch finds the event model through the list function's signature and docstring.
        return functools.wraps(list_func)(call)

    def _apply(self, kind: str, obj: Any) -> None:
        key = object_key(obj)
        obj = self._transform(obj)
        with self._lock:
            old = self._cache.get(key)
            if kind == "DELETED":
                if old is None:
                    return
                del self._cache[key]
                change = Change("DELETED", key, obj, old)
            else:
                self._cache[key] = obj
                if old is None:
                    change = Change("ADDED", key, obj)
                elif self._differs(old, obj):
                    change = Change("MODIFIED", key, obj, old)
                else:
                    return  # e.g. a watch restart replaying what the list already showed
        self._notify([change])

    def _differs(self, old: Any, new: Any) -> bool:
        # Plain JSON dicts and a transform's records (a slotted dataclass has no __dict__ to serialize) compare
        # with ==; client models are compared by their serialized form.
        if type(old) is type(new) and (isinstance(old, dict) or dataclasses.is_dataclass(old)):
            return bool(old != new)
        return bool(self._sanitize(old) != self._sanitize(new))

    def _notify(self, changes: builtins.list[Change]) -> None:
        for change in changes:
            for handler in self._handlers:
                try:
                    handler(change)
                except Exception:
                    log.exception(
                        "informer handler failed",
                        extra={"informer": self.name, "object": change.key, "change": change.type},
                    )


def _identity(obj: Any) -> Any:
    return obj


def _shutdown(response: Any) -> None:
    """Unblock a thread reading this response; closing alone does not wake a blocked recv()."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing left to unblock
            sock.shutdown(socket.SHUT_RDWR)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
