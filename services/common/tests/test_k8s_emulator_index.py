"""The emulator's index (by resource, namespace and name) answers as kmock's full scan did: same objects, same
order, deletions and re-creations included, across resources and namespaces; and the routing it replaced (kmock
replaying its request log) sends each request to the same handler however many came before."""

from __future__ import annotations

import kubernetes.client
import pytest

from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]


def test_lists_gets_and_deletes_through_the_index(kube: KubeEmulator) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    for namespace in ("a", "b"):
        for name in ("x", "y", "z"):
            core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": {"k": namespace}})
            core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"k": "cm"}})
    names = [f"{s.metadata.namespace}/{s.metadata.name}" for s in core.list_secret_for_all_namespaces().items]
    assert names == ["a/x", "a/y", "a/z", "b/x", "b/y", "b/z"]  # creation order, only Secrets
    assert [s.metadata.name for s in core.list_namespaced_secret("b").items] == ["x", "y", "z"]
    assert core.read_namespaced_secret("y", "b").metadata.namespace == "b"
    assert core.read_namespaced_config_map("y", "b").data == {"k": "cm"}

    core.delete_namespaced_secret("y", "a")
    with pytest.raises(kubernetes.client.ApiException) as gone:
        core.read_namespaced_secret("y", "a")
    assert gone.value.status == 404
    assert [s.metadata.name for s in core.list_namespaced_secret("a").items] == ["x", "z"]
    core.create_namespaced_secret("a", {"metadata": {"name": "y"}})  # re-created: kmock keeps its place
    assert [s.metadata.name for s in core.list_namespaced_secret("a").items] == ["x", "y", "z"]
    with pytest.raises(kubernetes.client.ApiException) as twice:
        core.create_namespaced_secret("a", {"metadata": {"name": "y"}})
    assert twice.value.status == 409
    assert set(kube.objects("v1/secrets")) == {"a/x", "a/y", "a/z", "b/x", "b/y", "b/z"}
    assert core.list_namespaced_pod("a").items == []  # a resource without objects lists empty


def test_routing_does_not_depend_on_the_requests_before(kube: KubeEmulator) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    for i in range(200):
        core.patch_namespaced_secret("s", "a", {"metadata": {"annotations": {"n": str(i)}}})
    found = core.read_namespaced_secret("s", "a")
    assert found.metadata.annotations == {"n": "199"}
    assert kube.request_count("update", "secrets") == 200  # the request log is still complete
    with pytest.raises(kubernetes.client.ApiException) as missing:
        core.read_namespaced_secret("t", "a")
    assert missing.value.status == 404
