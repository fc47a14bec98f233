"""Errors that tell the loop around a reconcile step what to do next, instead of crashing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homelab_common.k8s.events import ObjectRef

__all__ = ["KubeConfigError", "PermanentError", "ReconcileError", "TemporaryError"]


class KubeConfigError(RuntimeError):
    """Neither in-cluster credentials nor a kubeconfig could be loaded; the message says what to do."""


class ReconcileError(Exception):
    """Base for errors a reconcile step raises on purpose.

    ``obj`` names the object the error is about, so it is reported there as a Kubernetes Event
    (``reason`` becomes the Event's reason) where users look first (``kubectl describe``).
    """

    def __init__(self, message: str, *, obj: ObjectRef | None = None, reason: str = "ReconcileFailed") -> None:
        super().__init__(message)
        self.message = message
        self.obj = obj
        self.reason = reason


class TemporaryError(ReconcileError):
    """Something that should fix itself (a provider is down, a dependency is not ready): retry later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 10.0,
        obj: ObjectRef | None = None,
        reason: str = "ReconcileFailed",
    ) -> None:
        super().__init__(message, obj=obj, reason=reason)
        self.retry_after = retry_after


class PermanentError(ReconcileError):
    """Retrying cannot help (invalid configuration, a refused credential): wait for the next change."""
