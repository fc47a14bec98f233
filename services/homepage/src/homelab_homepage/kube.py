"""The Kubernetes adapter: four watch caches (Ingresses, EndpointSlices, Pods, Services) feeding the catalog.

A list is parsed without what the homepage never reads (:func:`parse_list`). Each listed or watched object is
reduced to a small record (``core.slim_*``) by the informer's transform, on the informer's thread: the cache
keeps only that record, which the catalog shares (one copy of each, no JSON
kept), and an update that changes nothing the record holds is no change at all. The catalog rebuilds the page
off the request path. A page view therefore makes no Kubernetes API call at all; the API
sees one list and one long-lived watch per kind (plus a relist every ``resync_seconds``), whatever the traffic.
Read-only: the chart's ClusterRole grants list/watch on exactly these four kinds.
"""

from __future__ import annotations

import json
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


STAGGER_SECONDS = 5.0

PATHS: dict[Kind, str] = {
    "ingress": "/apis/networking.k8s.io/v1/ingresses",
    "slice": "/apis/discovery.k8s.io/v1/endpointslices",
    "pod": "/api/v1/pods",
    "service": "/api/v1/services",
}


#: What kubectl adds to an object's annotations (the last applied object, as a JSON string) and the homepage
#: never reads; with a real API server's ``managedFields``, often more than the rest of the object.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

#: The top-level fields of each kind's objects that ``core.slim_*`` reads (keep in step with them); the others,
#: a Pod's spec above all (containers, env, volumes: often kilobytes), are dropped as a list is parsed.
READS: dict[Kind, frozenset[str]] = {
    "ingress": frozenset({"metadata", "spec"}),
    "slice": frozenset({"metadata", "endpoints"}),
    "pod": frozenset({"metadata", "status"}),
    "service": frozenset({"metadata", "spec"}),
}


def parse_list(text: str, reads: frozenset[str]) -> Any:
    """A list response, each object parsed without what the homepage never reads: ``managedFields``, the
    last-applied annotation and the top-level fields not in ``reads``. ``json.loads`` builds a dict's contents
    before calling the hook on it, so each object's bulk is dropped right after it is parsed and a first list
    (the worker's memory peak) or a relist never holds it all at once."""

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        if "resourceVersion" in obj:  # an object's metadata (not, say, a label that happens to be so named)
            obj.pop("managedFields", None)
        obj.pop(LAST_APPLIED, None)
        if "metadata" in obj and "items" not in obj:  # an object (the list itself has items)
            return {key: value for key, value in obj.items() if key in reads}
        return obj

    return json.loads(text, object_hook=hook)


def lister(api: kubernetes.client.ApiClient, kind: Kind) -> Callable[..., Any]:
    """List (or watch) every object of ``kind`` (at ``PATHS[kind]``) through the official client's ApiClient, as
    plain JSON dicts.

    Why not ``CoreV1Api(api).list_pod_for_all_namespaces``: in kubernetes 35+ every generated API method is
    wrapped in pydantic's ``validate_call``, and importing CoreV1Api alone builds ~400 validators (about 80 MB
    resident); the models built for every Pod cost more again. The ApiClient still does the configuration,
    authentication (the service account token) and TLS; the watch hands dicts over because this function's
    signature names no model type; the informer's transform then keeps a few fields of each.
    """

    def call(
        *,
        watch: bool = False,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_watch_bookmarks: bool | None = None,
        _request_timeout: Any = None,
        _preload_content: bool = True,
    ) -> Any:
        query: list[tuple[str, Any]] = []
        if watch:
            query.append(("watch", True))
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", timeout_seconds))
        if allow_watch_bookmarks is not None:
            query.append(("allowWatchBookmarks", allow_watch_bookmarks))
        request = api.param_serialize(
            "GET", PATHS[kind], query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )  # fmt: skip
        response = api.call_api(*request, _request_timeout=_request_timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise kubernetes.client.ApiException.from_response(http_resp=response, body=None, data=None)
        if watch or not _preload_content:
            return response.response  # the urllib3 response, streamed by kubernetes.watch
        try:
            text = response.read().decode()  # type: ignore[no-untyped-call]
        finally:
            response.response.release_conn()
        return parse_list(text, READS[kind])

    call.__name__ = "list_" + PATHS[kind].rsplit("/", 1)[-1]
    return call


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
        self.informers: dict[Kind, Informer] = {}
        for kind in PATHS:
            informer = Informer(
                lister(api, kind),
                name=f"homepage-{kind}",
                resync_period=resync_seconds,
                backoff=backoff(),
                request_timeout=request_timeout,
                transform=self._trimmer(kind),
            )
            informer.add_handler(self._handler(kind))
            self.informers[kind] = informer
        self._stopping = threading.Event()
        self._starting = threading.Lock()
        self._sync_thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog) -> KubeSource:
        return cls(load_client(settings.kubeconfig), catalog, resync_seconds=settings.resync_seconds)

    def _trimmer(self, kind: Kind) -> Callable[[Any], SlimIngress | SlimPod | SlimSlice | SlimService]:
        slim = SLIMMERS[kind]

        def transform(obj: Any) -> SlimIngress | SlimPod | SlimSlice | SlimService:
            return slim(obj if isinstance(obj, Mapping) else self._sanitize(obj))

        return transform

    def _handler(self, kind: Kind) -> Callable[[Change], None]:
        def handle(change: Change) -> None:
            self._catalog.apply(kind, change.key, None if change.type == "DELETED" else change.obj)

        return handle

    def start(self) -> KubeSource:
        """Start the watches (from a background thread, one kind at a time: see :meth:`_start_and_await_sync`)."""
        self._sync_thread = threading.Thread(target=self._start_and_await_sync, name="homepage-sync", daemon=True)
        self._sync_thread.start()
        return self

    def stop(self) -> None:
        with self._starting:
            self._stopping.set()
        for informer in self.informers.values():
            informer.stop()
        if self._sync_thread is not None:
            self._sync_thread.join(10)

    def _start_and_await_sync(self) -> None:
        """Start each informer once the previous one has its first list (or after ``STAGGER_SECONDS``), then
        wait for all: until every kind has been listed once, an app's status is "unknown", never a false "down".

        A first list is the process's memory peak (the JSON of every object of a kind at once); four at once
        leave about four peaks' worth of fragmented heap behind (+2-3 MB resident with 500 apps), one at a time
        about one. A kind whose list fails (say, RBAC) only delays the next one by ``STAGGER_SECONDS``.
        """
        for informer in self.informers.values():
            with self._starting:
                if self._stopping.is_set():
                    return
                informer.start()
            informer.wait_for_sync(timeout=STAGGER_SECONDS)
        for kind, informer in self.informers.items():
            while not informer.wait_for_sync(timeout=0.5):
                if self._stopping.is_set():
                    return
            log.debug("kubernetes cache synced", extra={"kind": kind})
        log.info("kubernetes caches synced", extra={"kinds": sorted(self.informers)})
        self._catalog.set_synced(True)
