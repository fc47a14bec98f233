"""The Kubernetes side: Ingress and Service watches as a record source, Events for invalid endpoints, the Lease.

Everything loops through homelab_common.k8s: informers (list + watch with a cache), the LeaderElector, the
EventRecorder. Only the leader writes Events, so two replicas do not report every problem twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client

from homelab_common.k8s import Backoff, EventRecorder, Informer, LeaderElector, ObjectRef
from homelab_dns.controller import Controller
from homelab_dns.core import Endpoint, Problem, ingress_endpoints, service_endpoints

#: What one object asks for: (object, kind "ingress"/"service", default TTL) -> endpoints and problems.
Select = Callable[[Mapping[str, Any], str, int], tuple[list[Endpoint], list[Problem]]]


def every_host(obj: Mapping[str, Any], kind: str, default_ttl: int) -> tuple[list[Endpoint], list[Problem]]:
    """The LAN's view: every Ingress host and every annotated LoadBalancer Service."""
    return (ingress_endpoints if kind == "ingress" else service_endpoints)(obj, default_ttl)


log = logging.getLogger(__name__)

KINDS = {
    "ingress": ("Ingress", "networking.k8s.io/v1"),
    "service": ("Service", "v1"),
}


class KubeSource:
    """Ingresses and LoadBalancer Services from the informers' caches, read fresh at every sync."""

    def __init__(self, ingresses: Informer, services: Informer, default_ttl: int, select: Select = every_host) -> None:
        self.ingresses = ingresses
        self.services = services
        self.default_ttl = default_ttl
        self.select = select
        self._sanitize: Callable[[Any], Any] = kubernetes.client.ApiClient().sanitize_for_serialization

    def _objects(self, informer: Informer) -> list[dict[str, Any]]:
        return [obj if isinstance(obj, dict) else self._sanitize(obj) for obj in informer.list()]

    def endpoints(self) -> tuple[list[Endpoint], list[Problem]]:
        endpoints: list[Endpoint] = []
        problems: list[Problem] = []
        for kind, informer in (("ingress", self.ingresses), ("service", self.services)):
            for obj in self._objects(informer):
                found, bad = self.select(obj, kind, self.default_ttl)
                endpoints += found
                problems += bad
        return endpoints, problems

    def ready(self) -> str | None:
        if self.ingresses.has_synced and self.services.has_synced:
            return None
        return "waiting for the first list of Ingresses and Services"

    def object_ref(self, resource: str) -> ObjectRef | None:
        """The object a ``ingress/<ns>/<name>`` resource names, with its uid, for an Event."""
        kind, _, key = resource.partition("/")
        informer = {"ingress": self.ingresses, "service": self.services}.get(kind)
        if informer is None:
            return None
        obj = informer.get(key)
        if obj is None:
            return None
        kind_name, api_version = KINDS[kind]
        return ObjectRef.of(obj, kind=kind_name, api_version=api_version)


class KubeWiring:
    """Watches, Events and the Lease for one controller; build it first, ``connect`` it to the controller after."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        default_ttl: int,
        namespace: str,
        lease_namespace: str,
        lease_name: str,
        identity: str,
        resync: float,
        backoff: Backoff | None = None,
        select: Select = every_host,
    ) -> None:
        self.api_client = api_client
        networking = kubernetes.client.NetworkingV1Api(api_client)
        core = kubernetes.client.CoreV1Api(api_client)
        options: dict[str, Any] = {"resync_period": resync, "backoff": backoff}
        if namespace:
            self.ingresses = Informer(
                networking.list_namespaced_ingress, name="ingresses", namespace=namespace, **options
            )
            self.services = Informer(core.list_namespaced_service, name="services", namespace=namespace, **options)
        else:
            self.ingresses = Informer(networking.list_ingress_for_all_namespaces, name="ingresses", **options)
            self.services = Informer(core.list_service_for_all_namespaces, name="services", **options)
        self.source = KubeSource(self.ingresses, self.services, default_ttl, select)
        self.recorder = EventRecorder(api_client, component="homelab-dns", namespace=lease_namespace)
        self.lease = (lease_namespace, lease_name, identity)
        self.elector: LeaderElector | None = None

    @property
    def informers(self) -> list[Informer]:
        return [self.ingresses, self.services]

    def is_leader(self) -> bool:
        return self.elector is not None and self.elector.is_leader

    def report(self, problem: Problem) -> None:
        """An invalid endpoint becomes a Warning Event on its object (the leader's job)."""
        if not self.is_leader():
            return
        ref = self.source.object_ref(problem.resource)
        if ref is not None:
            self.recorder.warning(ref, "InvalidEndpoint", problem.reason[:1000])

    def connect(self, controller: Controller) -> None:
        def started_leading() -> None:
            log.info("leading: this replica writes", extra={"lease": "/".join(self.lease[:2])})
            controller.forget_reports()
            controller.trigger()

        namespace, name, identity = self.lease
        self.elector = LeaderElector(
            self.api_client,
            namespace,
            name,
            identity,
            on_started_leading=started_leading,
            on_stopped_leading=controller.trigger,
        )
        self.ingresses.add_handler(controller.trigger)
        self.services.add_handler(controller.trigger)

    def start(self) -> None:
        self.ingresses.start()
        self.services.start()
        if self.elector is not None:
            self.elector.start()

    def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop()  # releases the Lease: the other replica takes over at once
        self.services.stop()
        self.ingresses.stop()
