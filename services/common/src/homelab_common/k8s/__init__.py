"""Kubernetes plumbing shared by the services: client, informer, reconciler, leader election, events.

A service writes only its reconcile step (desired vs observed → actions); the loop around it — list+watch,
resync, backoff, leader election, reporting — lives here, written once. The usual wiring::

    api = load_client()
    ingresses = Informer(NetworkingV1Api(api).list_ingress_for_all_namespaces)
    recorder = EventRecorder(api, component="homelab-dns", namespace="dns")
    reconciler = Reconciler(lambda: sync_records(ingresses.list()), name="dns",
                            informers=[ingresses], recorder=recorder)
    ingresses.add_handler(reconciler.trigger)
    elector = LeaderElector(api, "dns", "homelab-dns", identity=os.environ["POD_NAME"],
                            on_started_leading=reconciler.start, on_stopped_leading=reconciler.stop)
    ingresses.start(); elector.start()     # followers keep a warm cache; only the leader writes
    ...
    elector.stop(); ingresses.stop()       # on SIGTERM: release the Lease so the other replica takes over

Tests use :mod:`homelab_common.k8s.testing` (an emulated API server; needs the dev dependencies).
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
