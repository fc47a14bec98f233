"""The Kubernetes adapter: four watch caches (Ingresses, EndpointSlices, Pods, Services) feeding the catalog.

Each change is reduced to a small record once, on the informer's thread, and handed to the catalog, which
rebuilds the page off the request path. A page view therefore makes no Kubernetes API call at all; the API
sees one list and one long-lived watch per kind (plus a relist every ``resync_seconds``), whatever the traffic.
Read-only: the chart's ClusterRole grants list/watch on exactly these four kinds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client

from homelab_common.k8s import Backoff, Change, Informer, load_client
from homelab_homepage.catalog import Catalog, Kind
from homelab_homepage.core import (
    SlimIngress,
    SlimPod,
    SlimService,
    SlimSlice,
    slim_endpoint_slice,
    slim_ingress,
    slim_pod,
    slim_service,
)
from homelab_homepage.settings import Settings

log = logging.getLogger(__name__)

Slimmer = Callable[[Mapping[str, Any]], SlimIngress | SlimPod | SlimSlice | SlimService]
SLIMMERS: dict[Kind, Slimmer] = {
    "ingress": slim_ingress,
    "slice": slim_endpoint_slice,
    "pod": slim_pod,
    "service": slim_service,
}


class KubeSource:
    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        catalog: Catalog,
        *,
        resync_seconds: float = 300.0,
        backoff: Callable[[], Backoff] = Backoff,
        request_timeout: float = 30.0,
    ) -> None:
        self._catalog = catalog
        self._sanitize: Callable[[Any], Any] = api.sanitize_for_serialization
        networking = kubernetes.client.NetworkingV1Api(api)
        discovery = kubernetes.client.DiscoveryV1Api(api)
        core = kubernetes.client.CoreV1Api(api)
        lists: dict[Kind, Callable[..., Any]] = {
            "ingress": networking.list_ingress_for_all_namespaces,
            "slice": discovery.list_endpoint_slice_for_all_namespaces,
            "pod": core.list_pod_for_all_namespaces,
            "service": core.list_service_for_all_namespaces,
        }
        self.informers: dict[Kind, Informer] = {}
        for kind, list_func in lists.items():
            informer = Informer(
                list_func,
                name=f"homepage-{kind}",
                resync_period=resync_seconds,
                backoff=backoff(),
                request_timeout=request_timeout,
            )
            informer.add_handler(self._handler(kind))
            self.informers[kind] = informer
        self._stopping = threading.Event()
        self._sync_thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog) -> KubeSource:
        return cls(load_client(settings.kubeconfig), catalog, resync_seconds=settings.resync_seconds)

    def _handler(self, kind: Kind) -> Callable[[Change], None]:
        slim = SLIMMERS[kind]

        def handle(change: Change) -> None:
            if change.type == "DELETED":
                self._catalog.apply(kind, change.key, None)
                return
            raw = change.obj if isinstance(change.obj, Mapping) else self._sanitize(change.obj)
            self._catalog.apply(kind, change.key, slim(raw))

        return handle

    def start(self) -> KubeSource:
        for informer in self.informers.values():
            informer.start()
        self._sync_thread = threading.Thread(target=self._await_sync, name="homepage-sync", daemon=True)
        self._sync_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for informer in self.informers.values():
            informer.stop()
        if self._sync_thread is not None:
            self._sync_thread.join(10)

    def _await_sync(self) -> None:
        """Until every kind has been listed once, an app's status is "unknown" rather than a false "down"."""
        for kind, informer in self.informers.items():
            while not informer.wait_for_sync(timeout=0.5):
                if self._stopping.is_set():
                    return
            log.debug("kubernetes cache synced", extra={"kind": kind})
        log.info("kubernetes caches synced", extra={"kinds": sorted(self.informers)})
        self._catalog.set_synced(True)
