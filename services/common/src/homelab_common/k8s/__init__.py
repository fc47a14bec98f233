"""Kubernetes plumbing shared by the services: client, informer, reconciler, leader election, events.

A service writes only its reconcile step (desired vs observed → actions); the loop around it — list+watch,
resync, backoff, leader election, reporting — lives here, written once.
"""

from homelab_common.k8s.backoff import Backoff
from homelab_common.k8s.client import load_client
from homelab_common.k8s.errors import KubeConfigError, PermanentError, ReconcileError, TemporaryError
from homelab_common.k8s.events import EventRecorder, ObjectRef
from homelab_common.k8s.informer import Change, Informer, object_key
from homelab_common.k8s.leader import LeaderElector
from homelab_common.k8s.reconciler import Reconciler

__all__ = [
    "Backoff",
    "Change",
    "EventRecorder",
    "Informer",
    "KubeConfigError",
    "LeaderElector",
    "ObjectRef",
    "PermanentError",
    "ReconcileError",
    "Reconciler",
    "TemporaryError",
    "load_client",
    "object_key",
]
