"""Read-then-write: what counts as drift, and what the server may add without a rewrite."""

from __future__ import annotations

from homelab_bootstrap.kube import Kube, contains
from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]


def test_fields_the_server_adds_are_not_drift() -> None:
    desired = {"spec": {"generators": [{"git": {"repoURL": "u"}}], "goTemplate": True}}
    observed = {"spec": {"generators": [{"git": {"repoURL": "u", "requeueAfterSeconds": 180}}], "goTemplate": True}}
    assert contains(observed, desired)
    assert not contains({"spec": {"generators": [{"git": {"repoURL": "other"}}]}}, desired)
    assert not contains({"spec": {"generators": []}}, desired)
    assert not contains({"spec": {"generators": [{"git": {"repoURL": "u"}}, {"list": {}}]}}, desired)


def test_apply_creates_then_leaves_alone_then_updates_only_what_we_set(kube: KubeEmulator) -> None:
    api = Kube(kube.api_client())
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "root", "namespace": "argocd", "labels": {"a": "1"}},
        "spec": {"project": "default"},
    }
    assert api.apply(app) == "created"
    assert api.apply(app) == "unchanged"
    stored = api.get(app)
    assert stored is not None
    api.apply(
        stored
        | {
            "status": {"health": {"status": "Healthy"}},
            "metadata": stored["metadata"] | {"labels": {"a": "1", "b": "2"}},
        }
    )
    assert api.apply(app) == "unchanged", "status and foreign labels are not ours to reset"
    assert api.apply(app | {"spec": {"project": "homelab"}}) == "updated"
    after = api.get(app)
    assert after is not None
    assert after["spec"] == {"project": "homelab"}
    assert after["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert after["status"] == {"health": {"status": "Healthy"}}
    assert api.apply(app | {"spec": {"project": "other"}}, create_only=True) == "unchanged"
