"""Leader election on a coordination.k8s.io/v1 Lease, so only one replica of a writing service acts.

The algorithm is client-go's leaderelection: read the Lease; take it if it is free or its holder has not
renewed within ``lease_duration``; renew it every ``retry_period`` while leading; give up leading if renewals
have failed for ``renew_deadline``. Expiry is judged by when *we* last saw the Lease change (our monotonic
clock), never by the holder's ``renewTime``, so clock skew between nodes cannot make two leaders. Every
write carries the resourceVersion that was read: a 409 Conflict means another contender wrote first.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes.client

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)


class LeaderElector:
    """Contends for the Lease ``namespace/name`` as ``identity`` (use the pod name) on its own thread.

    ``on_started_leading`` / ``on_stopped_leading`` run on the elector's thread and must return quickly
    (start or stop a :class:`Reconciler`, for example); while they run, the Lease is not renewed.
    ``stop()`` releases the Lease so another replica takes over at once instead of after it expires.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        *,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("leader election needs lease_duration > renew_deadline > retry_period > 0")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._api = kubernetes.client.CoordinationV1Api(api_client)
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._leading = False
        self._last_renew = 0.0  # monotonic time of our last successful write of the Lease
        self._observed: tuple[Any, ...] | None = None  # the Lease record last read ...
        self._observed_at = 0.0  # ... and when (monotonic) it last changed
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading

    def start(self) -> LeaderElector:
        if self._thread is not None:
            raise RuntimeError(f"leader elector for {self.namespace}/{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop contending; if leading, release the Lease and call ``on_stopped_leading``."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> LeaderElector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------------------------------

    def _run(self) -> None:
        extra = {"lease": self._lease_name, "identity": self.identity}
        while not self._stopping.is_set():
            try:
                renewed = self._try_acquire_or_renew()
            except Exception as exc:  # API down: keep leading until renew_deadline, keep trying
                log.warning("lease update failed", extra=extra | {"error": f"{type(exc).__name__}: {exc}"})
                renewed = False
            now = time.monotonic()
            if renewed:
                self._last_renew = now
                if not self._leading:
                    log.info("started leading", extra=extra)
                    self._set_leading(True)
            elif self._leading and (now - self._last_renew > self._renew_deadline or self._held_by_other()):
                log.warning("stopped leading: lease lost", extra=extra)
                self._set_leading(False)
            # Followers jitter their polls so that contenders do not write in lockstep.
            delay = self._retry_period if self._leading else self._retry_period * random.uniform(1.0, 1.2)
            self._stopping.wait(delay)
        if self._leading:
            self._release()
            log.info("stopped leading: released the lease", extra=extra)
            self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        callback = self._on_started if leading else self._on_stopped
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("leader election callback failed", extra={"lease": self._lease_name})

    def _held_by_other(self) -> bool:
        return self._observed is not None and self._observed[0] not in (None, "", self.identity)

    def _try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec or kubernetes.client.V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.lease_duration_seconds, spec.lease_transitions)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        holder = spec.holder_identity
        if holder and holder != self.identity:
            duration = spec.lease_duration_seconds or self._lease_duration
            if time.monotonic() < self._observed_at + duration:
                return False  # someone else holds a lease that has not expired in our eyes
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if holder else 0)
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = round(self._lease_duration)
        spec.renew_time = now
        lease.spec = spec
        return self._write(lease)

    def _create(self, now: datetime) -> bool:
        lease = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=kubernetes.client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=round(self._lease_duration),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self.namespace, lease, _request_timeout=self._timeout)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return False  # another contender created it first
            raise
        return True

    def _write(self, lease: Any) -> bool:
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self._timeout)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                return False  # written by someone else since we read it (resourceVersion mismatch)
            raise
        return True

    def _release(self) -> None:
        """Hand the Lease back (empty holder) so a follower takes it on its next poll, not after expiry."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(UTC)
            self._write(lease)
        except Exception as exc:  # the Lease will simply expire
            log.warning(
                "could not release the lease",
                extra={"lease": self._lease_name, "error": f"{type(exc).__name__}: {exc}"},
            )

    @property
    def _lease_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def _timeout(self) -> float:
        return self._renew_deadline / 2
