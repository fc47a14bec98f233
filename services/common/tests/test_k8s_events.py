"""EventRecorder through the real client against the emulator in homelab_common.k8s.testing."""

from __future__ import annotations

import pytest

from homelab_common.k8s import EventRecorder, ObjectRef
from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]

INGRESS = ObjectRef("Ingress", "web", "apps", uid="1234", api_version="networking.k8s.io/v1")


def test_warning_is_stored_as_an_event_about_the_object(kube: KubeEmulator) -> None:
    recorder = EventRecorder(kube.api_client(), component="homelab-dns", instance="dns-0")
    recorder.warning(INGRESS, "RecordRejected", "provider refused web.home.arpa")
    events = kube.objects("events.k8s.io/v1/events", namespace="apps")
    assert len(events) == 1
    event = next(iter(events.values()))
    assert event["type"] == "Warning"
    assert event["reason"] == "RecordRejected"
    assert event["note"] == "provider refused web.home.arpa"
    assert event["reportingController"] == "homelab-dns"
    assert event["regarding"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "name": "web",
        "namespace": "apps",
        "uid": "1234",
    }
    assert recorder.failures == 0


def test_repeats_become_a_series_on_one_event(kube: KubeEmulator) -> None:
    recorder = EventRecorder(kube.api_client(), component="homelab-dns")
    for _ in range(3):
        recorder.warning(INGRESS, "RecordRejected", "provider refused web.home.arpa")
    recorder.normal(INGRESS, "RecordCreated", "web.home.arpa -> 10.0.0.5")
    events = kube.objects("events.k8s.io/v1/events", namespace="apps")
    by_reason = {event["reason"]: event for event in events.values()}
    assert set(by_reason) == {"RecordRejected", "RecordCreated"}
    assert by_reason["RecordRejected"]["series"]["count"] == 3
    assert "series" not in by_reason["RecordCreated"]


def test_cluster_scoped_objects_get_events_in_the_recorders_namespace(kube: KubeEmulator) -> None:
    recorder = EventRecorder(kube.api_client(), component="homelab-backup", namespace="backup")
    recorder.normal(ObjectRef("Node", "node-1"), "BackupDone", "snapshot 1a2b")
    assert len(kube.objects("events.k8s.io/v1/events", namespace="backup")) == 1


@pytest.mark.parametrize("status", [500, 403])
def test_api_errors_are_counted_not_raised(kube: KubeEmulator, status: int) -> None:
    kube.fail("create", "events", status=status)
    recorder = EventRecorder(kube.api_client(), component="homelab-dns")
    recorder.warning(INGRESS, "RecordRejected", "provider refused")
    assert recorder.failures == 1
    recorder.warning(INGRESS, "RecordRejected", "provider refused")
    assert recorder.failures == 1
    assert len(kube.objects("events.k8s.io/v1/events")) == 1


def test_unreachable_api_is_counted_not_raised(kube: KubeEmulator) -> None:
    recorder = EventRecorder(kube.api_client(), component="homelab-dns", request_timeout=2)
    with kube.outage():
        recorder.warning(INGRESS, "RecordRejected", "provider refused")
    assert recorder.failures == 1


def test_object_ref_from_a_client_model_and_a_dict() -> None:
    import kubernetes.client

    model = kubernetes.client.V1Ingress(metadata=kubernetes.client.V1ObjectMeta(name="web", namespace="apps", uid="u1"))
    assert ObjectRef.of(model, kind="Ingress", api_version="networking.k8s.io/v1") == ObjectRef(
        "Ingress", "web", "apps", "u1", "networking.k8s.io/v1"
    )
    as_dict = {"kind": "Secret", "metadata": {"name": "s", "namespace": "vault", "uid": "u2"}}
    assert ObjectRef.of(as_dict) == ObjectRef("Secret", "s", "vault", "u2", "v1")
    with pytest.raises(ValueError, match="kind"):
        ObjectRef.of(model)
