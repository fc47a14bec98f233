"""The emulator serves Namespaces (kmock 0.8 cannot parse their paths), as a real API server does."""

from __future__ import annotations

import kubernetes.client
import pytest

from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]


def test_namespaces_are_created_read_listed_and_deleted(kube: KubeEmulator) -> None:
    api = kubernetes.client.CoreV1Api(kube.api_client())
    with pytest.raises(kubernetes.client.ApiException) as missing:
        api.read_namespace("argocd")
    assert missing.value.status == 404
    created = api.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name="argocd"))
    )
    assert created.metadata.uid
    assert api.read_namespace("argocd").metadata.resource_version == created.metadata.resource_version
    with pytest.raises(kubernetes.client.ApiException) as twice:
        api.create_namespace({"metadata": {"name": "argocd"}})
    assert twice.value.status == 409
    assert [ns.metadata.name for ns in api.list_namespace().items] == ["argocd"]
    assert set(kube.objects("v1/namespaces")) == {"argocd"}
    api.delete_namespace("argocd")
    assert api.list_namespace().items == []


def test_namespaced_resources_still_go_to_kmock(kube: KubeEmulator) -> None:
    api = kubernetes.client.CoreV1Api(kube.api_client())
    api.create_namespaced_config_map("apps", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    assert api.read_namespaced_config_map("c", "apps").data == {"k": "v"}
