"""The Reconciler's scheduling and error handling; the Event test runs against the emulated API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import kubernetes.client

from homelab_common.k8s import (
    Backoff,
    EventRecorder,
    Informer,
    ObjectRef,
    PermanentError,
    Reconciler,
    TemporaryError,
)
from homelab_common.k8s.testing import KubeEmulator, kube, wait_for

__all__ = ["kube"]

INGRESS = ObjectRef("Ingress", "web", "apps", uid="u1", api_version="networking.k8s.io/v1")


class Calls:
    """A reconcile function that records when it ran and fails as scripted."""

    def __init__(self, *failures: Exception) -> None:
        self.times: list[float] = []
        self._failures = list(failures)
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.times.append(time.monotonic())
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise failure

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.times)


def quiet(reconcile: Callable[[], None], **kwargs: object) -> Reconciler:
    """A reconciler whose periodic resync never fires during a test."""
    options: dict[str, object] = {"resync_period": 3600.0, "backoff": Backoff(initial=0.05, maximum=0.1)}
    options.update(kwargs)
    return Reconciler(reconcile, **options)  # type: ignore[arg-type]


def test_runs_once_at_start() -> None:
    calls = Calls()
    with quiet(calls):
        wait_for(lambda: calls.count == 1)


def test_a_burst_of_triggers_is_coalesced_into_few_runs() -> None:
    calls = Calls()
    with quiet(calls, debounce=0.5) as reconciler:
        wait_for(lambda: calls.count == 1)
        for _ in range(200):
            reconciler.trigger()
        wait_for(lambda: calls.count >= 2)
        # Poll a while longer for stragglers: a burst may straddle one window, never 200 of them.
        for _ in range(20):
            time.sleep(0.05)
    assert 2 <= calls.count <= 4


def test_a_trigger_after_a_run_runs_again() -> None:
    calls = Calls()
    with quiet(calls, debounce=0.01) as reconciler:
        wait_for(lambda: calls.count == 1)
        reconciler.trigger()
        wait_for(lambda: calls.count == 2)
        reconciler.trigger()
        wait_for(lambda: calls.count == 3)


def test_temporary_error_is_retried_after_its_delay() -> None:
    calls = Calls(TemporaryError("dns provider unreachable", retry_after=0.3))
    reconciler = quiet(calls)
    with reconciler:
        wait_for(lambda: calls.count == 2)
    assert calls.times[1] - calls.times[0] >= 0.3
    assert reconciler.last_error is None


def test_repeated_temporary_errors_back_off_beyond_retry_after() -> None:
    failures = [TemporaryError("down", retry_after=0.0) for _ in range(4)]
    calls = Calls(*failures)
    with Reconciler(calls, resync_period=3600.0, backoff=Backoff(initial=0.05, maximum=10.0, factor=2.0)):
        wait_for(lambda: calls.count == 5)
    gaps = [later - earlier for earlier, later in zip(calls.times, calls.times[1:], strict=False)]
    assert gaps[-1] >= 0.2  # the fourth consecutive failure waits at least half of 0.05 * 2**3


def test_permanent_error_is_reported_and_waits_for_the_next_change(kube: KubeEmulator) -> None:
    calls = Calls(PermanentError("zone apps.example is not ours", obj=INGRESS, reason="ZoneRefused"))
    recorder = EventRecorder(kube.api_client(), component="homelab-dns")
    reconciler = quiet(calls, recorder=recorder, resync_period=0.2)
    with reconciler:
        wait_for(lambda: calls.count == 1)
        wait_for(lambda: len(kube.objects("events.k8s.io/v1/events", namespace="apps")) == 1)
        time.sleep(0.5)  # longer than resync_period: a resync must not retry a permanent error
        assert calls.count == 1
        assert isinstance(reconciler.last_error, PermanentError)
        reconciler.trigger()
        wait_for(lambda: calls.count == 2)
    event = next(iter(kube.objects("events.k8s.io/v1/events", namespace="apps").values()))
    assert event["reason"] == "ZoneRefused"
    assert event["type"] == "Warning"


def test_unexpected_exceptions_are_retried_not_fatal() -> None:
    calls = Calls(RuntimeError("bug"), KeyError("bug"))
    with quiet(calls):
        wait_for(lambda: calls.count == 3)


def test_periodic_resync_runs_without_triggers() -> None:
    calls = Calls()
    with quiet(calls, resync_period=0.1):
        wait_for(lambda: calls.count >= 3)


def test_waits_for_informers_to_sync_before_the_first_run(kube: KubeEmulator) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "zone"}, "data": {"a": "1"}})
    kube.fail("list", "configmaps", status=500, times=2)
    informer = Informer(
        core.list_namespaced_config_map, namespace="default", backoff=Backoff(initial=0.05, maximum=0.1)
    )
    seen: list[list[str]] = []
    reconciler = quiet(lambda: seen.append(informer.keys()), informers=[informer])
    informer.add_handler(reconciler.trigger)
    with reconciler, informer:
        wait_for(lambda: len(seen) >= 1)
    assert seen[0] == ["default/zone"]


def test_stop_returns_while_idle() -> None:
    calls = Calls()
    reconciler = quiet(calls).start()
    wait_for(lambda: calls.count == 1)
    reconciler.stop(timeout=30)
    assert reconciler._thread is not None
    assert not reconciler._thread.is_alive()


def test_can_be_restarted_after_stop() -> None:
    calls = Calls()
    reconciler = quiet(calls)
    with reconciler:
        wait_for(lambda: calls.count == 1)
    with reconciler:
        wait_for(lambda: calls.count == 2)
