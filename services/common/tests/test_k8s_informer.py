"""The informer through the real kubernetes client against the emulator in homelab_common.k8s.testing."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from homelab_common.k8s import Backoff, Change, Informer
from homelab_common.k8s.testing import KubeEmulator, kube, wait_for

__all__ = ["kube"]  # the fixture, re-exported for pytest

FAST = Backoff(initial=0.05, maximum=0.2)


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


@pytest.fixture
def core(kube: KubeEmulator) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube.api_client())


class Recorder:
    """Collects changes from the informer thread for assertions in the test thread."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)

    def seen(self, kind: str, key: str) -> bool:
        with self._lock:
            return any(c.type == kind and c.key == key for c in self.changes)


@pytest.fixture
def informer(core: kubernetes.client.CoreV1Api) -> Iterator[tuple[Informer, Recorder]]:
    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST, request_timeout=2)
    informer.add_handler(recorder)
    informer.start()
    assert informer.wait_for_sync(timeout=30)
    yield informer, recorder
    informer.stop()


def test_list_then_watch_delivers_add_update_delete(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    core.create_namespaced_pod("default", pod("before"))
    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST)
    informer.add_handler(recorder)
    with informer:
        wait_for(lambda: recorder.seen("ADDED", "default/before"))
        core.create_namespaced_pod("default", pod("p1"))
        wait_for(lambda: recorder.seen("ADDED", "default/p1"))
        core.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"app": "web"}}})
        wait_for(lambda: recorder.seen("MODIFIED", "default/p1"))
        cached = informer.get("default/p1")
        assert cached is not None
        assert cached.metadata.labels == {"app": "web"}
        core.delete_namespaced_pod("p1", "default")
        wait_for(lambda: recorder.seen("DELETED", "default/p1"))
        assert informer.keys() == ["default/before"]
    modified = [c for c in recorder.changes if c.type == "MODIFIED"]
    assert modified[0].old.metadata.labels in (None, {})


def test_watch_starts_from_the_lists_resource_version(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    core.create_namespaced_pod("default", pod("p1"))
    core.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"v": "2"}}})
    with Informer(core.list_namespaced_pod, namespace="default", backoff=FAST):
        wait_for(lambda: kube.request_count("watch", "pods") >= 1)
    assert kube.request_params("watch", "pods")[0]["resourceVersion"] == "2"
    assert kube.request_count("list", "pods") == 1


@pytest.mark.parametrize("how", ["error event", "http status"])
def test_watch_expiry_relists_and_continues(how: str, core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    if how == "error event":
        kube.expire_watch("pods")
    else:
        kube.fail("watch", "pods", status=410)
    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST)
    informer.add_handler(recorder)
    with informer:
        wait_for(lambda: kube.pending_faults() == 0)
        wait_for(lambda: kube.request_count("list", "pods") >= 2)
        core.create_namespaced_pod("default", pod("after-expiry"))
        wait_for(lambda: recorder.seen("ADDED", "default/after-expiry"))


@pytest.mark.parametrize("action", ["list", "watch"])
def test_server_errors_are_retried_until_the_informer_catches_up(
    action: str, core: kubernetes.client.CoreV1Api, kube: KubeEmulator
) -> None:
    kube.fail(action, "pods", status=500, times=3)
    core.create_namespaced_pod("default", pod("p1"))
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST)
    with informer:
        wait_for(lambda: kube.pending_faults() == 0)
        wait_for(lambda: informer.get("default/p1") is not None)
        core.create_namespaced_pod("default", pod("p2"))
        wait_for(lambda: informer.get("default/p2") is not None)


def test_slow_api_times_out_and_is_retried(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    kube.delay("list", "pods", seconds=3, times=1)
    core.create_namespaced_pod("default", pod("p1"))
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST, request_timeout=0.5)
    with informer:
        wait_for(lambda: informer.get("default/p1") is not None)
    assert kube.request_count("list", "pods") >= 2


def test_refused_connections_are_retried_and_changes_during_the_outage_caught_up(
    core: kubernetes.client.CoreV1Api, kube: KubeEmulator, informer: tuple[Informer, Recorder]
) -> None:
    cache, recorder = informer
    core.create_namespaced_pod("default", pod("doomed"))
    wait_for(lambda: cache.get("default/doomed") is not None)
    lists_before = kube.request_count("list", "pods")
    with kube.outage():
        # The informer now gets "connection refused" for a while and must keep retrying.
        wait_for(lambda: cache.failures >= 2)
    core.delete_namespaced_pod("doomed", "default")
    core.create_namespaced_pod("default", pod("born-later"))
    wait_for(lambda: cache.keys() == ["default/born-later"])
    assert recorder.seen("DELETED", "default/doomed")
    assert kube.request_count("list", "pods") > lists_before


def test_periodic_resync_relists(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST, resync_period=0.5)
    with informer:
        wait_for(lambda: kube.request_count("list", "pods") >= 3)


def test_stop_returns_promptly_from_an_idle_watch(kube: KubeEmulator, informer: tuple[Informer, Recorder]) -> None:
    cache, _ = informer
    wait_for(lambda: kube.request_count("watch", "pods") >= 1)
    cache.stop(timeout=30)
    assert cache._thread is not None
    assert not cache._thread.is_alive()


def test_a_failing_handler_does_not_stop_the_informer(core: kubernetes.client.CoreV1Api) -> None:
    def broken(change: Change) -> None:
        raise RuntimeError("handler bug")

    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST)
    informer.add_handler(broken)
    informer.add_handler(recorder)
    with informer:
        core.create_namespaced_pod("default", pod("p1"))
        wait_for(lambda: recorder.seen("ADDED", "default/p1"))
        core.create_namespaced_pod("default", pod("p2"))
        wait_for(lambda: recorder.seen("ADDED", "default/p2"))


def test_cluster_wide_list_keys_by_namespace(kube: KubeEmulator) -> None:
    net = kubernetes.client.NetworkingV1Api(kube.api_client())
    ingress = {"metadata": {"name": "web"}, "spec": {"rules": [{"host": "web.home.arpa"}]}}
    net.create_namespaced_ingress("apps", ingress)
    informer = Informer(net.list_ingress_for_all_namespaces, backoff=FAST)
    with informer:
        assert informer.wait_for_sync(timeout=30)
        assert informer.keys() == ["apps/web"]
        assert informer.list()[0].spec.rules[0].host == "web.home.arpa"


def test_repeated_expiry_backs_off_instead_of_spinning(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    kube.expire_watch("pods", times=4)
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST)
    with informer:
        wait_for(lambda: kube.pending_faults() == 0)
        wait_for(lambda: informer.failures >= 1)
        core.create_namespaced_pod("default", pod("p1"))
        wait_for(lambda: informer.get("default/p1") is not None)


def test_transform_keeps_only_what_the_service_reads(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    def names_and_labels(obj: Any) -> dict[str, Any]:
        return {"metadata": {"name": obj.metadata.name, "namespace": obj.metadata.namespace,
                             "labels": obj.metadata.labels or {}}}  # fmt: skip

    core.create_namespaced_pod("default", pod("p1", app="web"))
    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST, transform=names_and_labels)
    informer.add_handler(recorder)
    with informer:
        wait_for(lambda: recorder.seen("ADDED", "default/p1"))
        assert informer.get("default/p1") == {
            "metadata": {"name": "p1", "namespace": "default", "labels": {"app": "web"}}
        }
        core.create_namespaced_pod("default", pod("p2"))
        wait_for(lambda: recorder.seen("ADDED", "default/p2"))
        core.patch_namespaced_pod("p1", "default", {"spec": {"activeDeadlineSeconds": 5}})  # not kept: no change
        core.patch_namespaced_pod("p2", "default", {"metadata": {"labels": {"app": "db"}}})
        wait_for(lambda: recorder.seen("MODIFIED", "default/p2"))
        assert not recorder.seen("MODIFIED", "default/p1")
        core.delete_namespaced_pod("p2", "default")
        wait_for(lambda: recorder.seen("DELETED", "default/p2"))
    assert all(isinstance(c.obj, dict) for c in recorder.changes)


@dataclasses.dataclass(frozen=True, slots=True)
class PodRecord:
    name: str
    labels: tuple[tuple[str, str], ...]


def test_transform_may_return_slotted_records(core: kubernetes.client.CoreV1Api, kube: KubeEmulator) -> None:
    """A small frozen record per object (no __dict__, no JSON kept) is compared with ==, not serialized."""

    def record(obj: Any) -> PodRecord:
        return PodRecord(obj.metadata.name, tuple(sorted((obj.metadata.labels or {}).items())))

    core.create_namespaced_pod("default", pod("p1", app="web"))
    recorder = Recorder()
    informer = Informer(core.list_namespaced_pod, namespace="default", backoff=FAST, transform=record)
    informer.add_handler(recorder)
    with informer:
        wait_for(lambda: recorder.seen("ADDED", "default/p1"))
        core.patch_namespaced_pod("p1", "default", {"spec": {"activeDeadlineSeconds": 5}})  # not kept: no change
        core.create_namespaced_pod("default", pod("p2"))
        wait_for(lambda: recorder.seen("ADDED", "default/p2"))
        core.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"app": "db"}}})
        wait_for(lambda: recorder.seen("MODIFIED", "default/p1"))
        assert informer.get("default/p1") == PodRecord("p1", (("app", "db"),))
        assert len([c for c in recorder.changes if c.key == "default/p1" and c.type == "MODIFIED"]) == 1
