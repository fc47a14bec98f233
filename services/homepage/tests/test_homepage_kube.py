"""Discovery and health through the real Kubernetes client against the emulator (homelab_common.k8s.testing).

The app runs with its real background threads (watch caches, page-model builder); each test changes objects
through the API and waits, with a generous bound, until the page (or the JSON API) shows the change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes.client
import pytest
from flask import Flask
from homepage_factories import endpoint_slice, homepage, ingress, parts, pod, service

from homelab_common.k8s.testing import KubeEmulator, kube, wait_for
from homelab_homepage.app import create_app
from homelab_homepage.catalog import Kind
from homelab_homepage.kube import LAST_APPLIED, PATHS, READS, SLIMMERS, lister, parse_list
from homelab_homepage.settings import Settings

__all__ = ["kube"]  # the fixture, re-exported for pytest


class Cluster:
    def __init__(self, emulator: KubeEmulator) -> None:
        api = emulator.api_client()
        self.net = kubernetes.client.NetworkingV1Api(api)
        self.disc = kubernetes.client.DiscoveryV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def app(self, key: str, ready: list[bool], **annotations: str) -> None:
        """An Ingress ``key`` with gethomepage annotations, its Service, and an EndpointSlice."""
        name = key
        self.core.create_namespaced_service("apps", service(name))
        self.disc.create_namespaced_endpoint_slice("apps", endpoint_slice(name, ready))
        self.net.create_namespaced_ingress(
            "apps", ingress(name, host=f"{name}.lan", annotations=homepage(**annotations))
        )


@pytest.fixture
def cluster(kube: KubeEmulator) -> Cluster:
    return Cluster(kube)


@pytest.fixture
def served(kube: KubeEmulator) -> Iterator[Flask]:
    settings = Settings(kubernetes=True, href_check_interval_seconds=0, refresh_seconds=0)
    app = create_app(settings, api_client=kube.api_client())
    yield app
    parts(app).stop()


def apps(app: Flask) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in app.test_client().get("/api/v1/apps").get_json()["apps"]}


def eventually(check: Callable[[], object]) -> None:
    wait_for(check, timeout=30)


def test_ingresses_added_changed_and_deleted_show_on_the_page(cluster: Cluster, served: Flask) -> None:
    client = served.test_client()
    eventually(lambda: client.get("/readyz").status_code == 200)
    cluster.app("gitea", [True], name="Gitea", group="Dev")
    eventually(lambda: 'data-id="ingress/apps/gitea"' in client.get("/").get_data(as_text=True))
    assert apps(served)["ingress/apps/gitea"]["health"]["status"] == "up"
    cluster.net.patch_namespaced_ingress(
        "gitea",
        "apps",
        {"metadata": {"annotations": {"gethomepage.dev/name": "Forge", "gethomepage.dev/group": "Code"}}},
    )
    eventually(lambda: "Forge" in client.get("/?q=forge").get_data(as_text=True))
    assert apps(served)["ingress/apps/gitea"]["group"] == "Code"
    cluster.net.patch_namespaced_ingress(
        "gitea", "apps", {"metadata": {"annotations": {"gethomepage.dev/enabled": "ture"}}}
    )
    eventually(lambda: "ingress/apps/gitea" not in apps(served))
    diagnostics = client.get("/api/v1/diagnostics").get_json()["diagnostics"]
    assert [(d["kind"], d["source"]) for d in diagnostics] == [("bad-enabled", "ingress/apps/gitea")]
    cluster.net.delete_namespaced_ingress("gitea", "apps")
    eventually(lambda: client.get("/api/v1/diagnostics").get_json()["diagnostics"] == [])


def test_endpoints_becoming_ready_and_unready_change_the_status(cluster: Cluster, served: Flask) -> None:
    cluster.app("jellyfin", [False, False])
    eventually(lambda: apps(served).get("ingress/apps/jellyfin", {}).get("health", {}).get("status") == "down")
    slice_name = "jellyfin-abcde"
    cluster.disc.replace_namespaced_endpoint_slice(slice_name, "apps", endpoint_slice("jellyfin", [True, False]))
    eventually(lambda: apps(served)["ingress/apps/jellyfin"]["health"]["status"] == "degraded")
    assert apps(served)["ingress/apps/jellyfin"]["health"]["reason"] == "1/2 endpoints ready"
    cluster.disc.replace_namespaced_endpoint_slice(slice_name, "apps", endpoint_slice("jellyfin", [True, True]))
    eventually(lambda: apps(served)["ingress/apps/jellyfin"]["health"]["status"] == "up")
    cluster.disc.delete_namespaced_endpoint_slice(slice_name, "apps")
    eventually(lambda: apps(served)["ingress/apps/jellyfin"]["health"]["reason"] == "no endpoints")
    cluster.core.delete_namespaced_service("jellyfin", "apps")
    eventually(lambda: apps(served)["ingress/apps/jellyfin"]["health"]["reason"] == "Service apps/jellyfin not found")


def test_pods_selected_by_annotation_becoming_ready_change_the_status(cluster: Cluster, served: Flask) -> None:
    labels = {"app.kubernetes.io/name": "grafana"}
    cluster.net.create_namespaced_ingress("apps", ingress("grafana", host="g.lan", annotations=homepage(app="grafana")))
    cluster.core.create_namespaced_pod("apps", pod("grafana-0", labels, ready=False))
    cluster.core.create_namespaced_pod("apps", pod("grafana-1", labels, ready=False))
    eventually(lambda: apps(served).get("ingress/apps/grafana", {}).get("health", {}).get("reason") == "0/2 pods ready")
    cluster.core.replace_namespaced_pod("grafana-0", "apps", pod("grafana-0", labels, ready=True))
    eventually(lambda: apps(served)["ingress/apps/grafana"]["health"]["status"] == "degraded")
    cluster.core.replace_namespaced_pod("grafana-1", "apps", pod("grafana-1", labels, ready=True))
    eventually(lambda: apps(served)["ingress/apps/grafana"]["health"]["status"] == "up")
    cluster.core.replace_namespaced_pod("grafana-0", "apps", pod("grafana-0", labels, ready=False))
    eventually(lambda: apps(served)["ingress/apps/grafana"]["health"]["status"] == "degraded")


def test_page_views_make_no_kubernetes_api_requests(cluster: Cluster, served: Flask, kube: KubeEmulator) -> None:
    for name in ("a", "b", "c"):
        cluster.app(name, [True])
    eventually(lambda: len(apps(served)) == 3)
    client = served.test_client()

    def requests() -> int:
        return sum(kube.request_count(action) for action in ("list", "watch", "fetch", "create", "update", "delete"))

    before = requests()
    for _ in range(20):
        assert client.get("/").status_code == 200
        assert client.get("/?q=a").status_code == 200
        assert client.get("/api/v1/apps").status_code == 200
        assert client.get("/fragment").status_code == 200
    assert requests() == before


def test_status_is_unknown_and_not_ready_until_every_kind_is_listed(cluster: Cluster, kube: KubeEmulator) -> None:
    cluster.app("gitea", [True])
    kube.fail("list", "pods", status=500, times=2)
    settings = Settings(kubernetes=True, href_check_interval_seconds=0)
    app = create_app(settings, api_client=kube.api_client())
    try:
        client = app.test_client()
        first = client.get("/readyz")
        statuses = {a["health"]["status"] for a in apps(app).values()}
        assert first.status_code == 503 or statuses == {"up"}  # the retries may already have succeeded
        assert "down" not in statuses  # never a false "down" before the caches are filled
        eventually(lambda: client.get("/readyz").status_code == 200)
        eventually(lambda: apps(app)["ingress/apps/gitea"]["health"]["status"] == "up")
    finally:
        parts(app).stop()


def test_unused_kubernetes_subpackages_are_not_executed_until_used() -> None:
    """lean.py: `import kubernetes` runs dynamic/stream/...; deferred, they cost nothing yet still work."""
    script = (
        "import sys\n"
        "from homelab_homepage.lean import defer_unused_kubernetes_modules\n"
        "defer_unused_kubernetes_modules()\n"
        "import kubernetes.client, kubernetes.config, kubernetes.watch\n"
        "assert 'jsonschema' not in sys.modules and 'websocket' not in sys.modules, 'executed at import'\n"
        "from kubernetes.dynamic import DynamicClient\n"
        "assert 'jsonschema' in sys.modules and DynamicClient.__name__ == 'DynamicClient'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_the_gunicorn_master_loads_neither_flask_nor_kubernetes() -> None:
    """__main__ runs in the master; the app (flask, kubernetes) is imported in the worker only."""
    script = (
        "import sys, homelab_homepage.__main__\n"
        "assert not {'flask', 'kubernetes'} & set(sys.modules), 'imported in the master'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_lists_are_parsed_without_managed_fields_or_last_applied(cluster: Cluster, kube: KubeEmulator) -> None:
    """What a real API server and kubectl add (and the homepage never reads) is dropped as the list is parsed;
    the rest of the object, other annotations and labels included, is as served."""
    obj = ingress("a", host="a.lan", annotations={**homepage(), LAST_APPLIED: '{"kind":"Ingress"}', "x/y": "z"})
    obj["metadata"]["labels"] = {"managedFields": "kept"}  # a label so named is no server-set field
    obj["metadata"]["managedFields"] = [{"manager": "helm", "operation": "Apply", "fieldsType": "FieldsV1"}]
    cluster.net.create_namespaced_ingress("apps", obj)
    served = kube.api_client().call_api(
        *kube.api_client().param_serialize("GET", PATHS["ingress"], header_params={"Accept": "application/json"})
    )
    assert "managedFields" in json.loads(served.read())["items"][0]["metadata"], "the emulator keeps it: a real test"
    meta = lister(kube.api_client(), "ingress")()["items"][0]["metadata"]
    assert "managedFields" not in meta
    assert LAST_APPLIED not in meta["annotations"]
    assert meta["labels"] == {"managedFields": "kept"}
    assert meta["annotations"]["x/y"] == "z"
    assert meta["annotations"]["gethomepage.dev/enabled"] == "true"


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("ingress", ingress("a", host="a.lan", tls=True, annotations=homepage(name="A"))),
        ("pod", pod("p", {"app": "web"}, True)),
        ("pod", pod("q", {"app": "web"}, False)),
        ("slice", endpoint_slice("web", [True, False], terminating=1)),
        ("service", service("web", type_="ExternalName")),
    ],
)
def test_a_list_parsed_without_unread_fields_gives_the_same_records(kind: Kind, obj: dict[str, Any]) -> None:
    """READS must name every top-level field core.slim_* reads: its records are the same with and without the rest."""
    obj = obj | {"status": {**obj.get("status", {}), "containerStatuses": [{"name": "main", "ready": True}]}}
    obj["spec"] = {**obj.get("spec", {}), "volumes": [{"name": "v", "ephemeral": {"volumeClaimTemplate": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"accessModes": ["ReadWriteOnce"]}}}}]}  # fmt: skip
    parsed = parse_list(json.dumps({"metadata": {"resourceVersion": "9"}, "items": [obj]}), READS[kind])
    assert parsed["metadata"] == {"resourceVersion": "9"}
    assert set(parsed["items"][0]) == READS[kind] & set(obj)
    assert SLIMMERS[kind](parsed["items"][0]) == SLIMMERS[kind](obj)
