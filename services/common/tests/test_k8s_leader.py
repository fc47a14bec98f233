"""Leader election through the real client against the emulator, which enforces resourceVersions."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import kubernetes.client
import pytest

from homelab_common.k8s import LeaderElector, Reconciler
from homelab_common.k8s.testing import KubeEmulator, kube, wait_for

__all__ = ["kube"]

FAST = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.1}


class Transitions:
    def __init__(self) -> None:
        self.log: list[str] = []
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self.log.append("started")

    def stopped(self) -> None:
        with self._lock:
            self.log.append("stopped")


def contender(kube: KubeEmulator, identity: str, **timings: float) -> tuple[LeaderElector, Transitions]:
    transitions = Transitions()
    elector = LeaderElector(
        kube.api_client(),
        "dns",
        "homelab-dns",
        identity,
        **(FAST | timings),
        on_started_leading=transitions.started,
        on_stopped_leading=transitions.stopped,
    )
    return elector, transitions


@pytest.fixture
def contenders(kube: KubeEmulator) -> Iterator[list[tuple[LeaderElector, Transitions]]]:
    made = [contender(kube, "dns-0"), contender(kube, "dns-1")]
    yield made
    for elector, _ in made:
        elector.stop()


def leaders(contenders: list[tuple[LeaderElector, Transitions]]) -> list[str]:
    return [elector.identity for elector, _ in contenders if elector.is_leader]


def holder(kube: KubeEmulator) -> str | None:
    lease = kube.objects("coordination.k8s.io/v1/leases", namespace="dns").get("dns/homelab-dns")
    return None if lease is None else lease["spec"].get("holderIdentity")


def test_exactly_one_of_two_contenders_leads(
    kube: KubeEmulator, contenders: list[tuple[LeaderElector, Transitions]]
) -> None:
    for elector, _ in contenders:
        elector.start()
    wait_for(lambda: len(leaders(contenders)) == 1)
    # Several renewal rounds later, still exactly one, and it is the Lease's holder.
    for _ in range(20):
        threading.Event().wait(0.05)
        assert len(leaders(contenders)) <= 1
    assert leaders(contenders) == [holder(kube)]


def test_a_stopping_leader_releases_and_the_other_takes_over(kube: KubeEmulator) -> None:
    # A lease far longer than the test: taking over must come from the release, not from expiry.
    (first, first_log), (second, second_log) = (
        contender(kube, identity, lease_duration=3600.0) for identity in ("dns-0", "dns-1")
    )
    first.start()
    wait_for(lambda: first.is_leader)
    second.start()
    wait_for(lambda: kube.request_count("fetch", "leases") >= 4)
    assert not second.is_leader
    first.stop()
    assert first_log.log == ["started", "stopped"]
    wait_for(lambda: second.is_leader)
    assert holder(kube) == "dns-1"
    assert second_log.log == ["started"]
    second.stop()


def test_a_dead_leaders_lease_is_taken_over_after_it_expires(kube: KubeEmulator) -> None:
    coordination = kubernetes.client.CoordinationV1Api(kube.api_client())
    now = datetime.now(UTC)
    spec = {"holderIdentity": "crashed-pod", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now}
    coordination.create_namespaced_lease("dns", {"metadata": {"name": "homelab-dns"}, "spec": spec})
    with LeaderElector(kube.api_client(), "dns", "homelab-dns", "dns-1", **FAST) as elector:
        wait_for(lambda: elector.is_leader)
    lease = coordination.read_namespaced_lease("homelab-dns", "dns")
    assert lease.spec.lease_transitions == 1


def test_a_live_lease_held_by_another_is_respected(kube: KubeEmulator) -> None:
    coordination = kubernetes.client.CoordinationV1Api(kube.api_client())
    now = datetime.now(UTC)
    spec = {"holderIdentity": "dns-0", "leaseDurationSeconds": 3600, "renewTime": now}
    coordination.create_namespaced_lease("dns", {"metadata": {"name": "homelab-dns"}, "spec": spec})
    with LeaderElector(kube.api_client(), "dns", "homelab-dns", "dns-1", **FAST) as elector:
        wait_for(lambda: kube.request_count("fetch", "leases") >= 5)
        assert not elector.is_leader
    assert holder(kube) == "dns-0"


def test_a_leader_that_cannot_renew_steps_down_and_recovers(kube: KubeEmulator) -> None:
    elector, transitions = contender(kube, "dns-0")
    with elector:
        wait_for(lambda: elector.is_leader)
        with kube.outage():
            wait_for(lambda: not elector.is_leader)
        wait_for(lambda: elector.is_leader)
    assert transitions.log == ["started", "stopped", "started", "stopped"]


def test_conflicting_write_means_someone_else_won(kube: KubeEmulator) -> None:
    elector = LeaderElector(kube.api_client(), "dns", "homelab-dns", "dns-1", **FAST)
    kube.fail("create", "leases", status=409)
    assert elector._try_acquire_or_renew() is False
    assert not elector.is_leader


def test_invalid_timings_are_refused(kube: KubeEmulator) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(kube.api_client(), "dns", "x", "me", lease_duration=5, renew_deadline=10)


def test_only_the_leader_runs_its_reconciler(kube: KubeEmulator) -> None:
    """The wiring every writing service uses: leadership starts and stops the reconciler."""
    runs: dict[str, int] = {"dns-0": 0, "dns-1": 0}
    electors = []
    for identity in runs:
        reconciler = Reconciler(functools.partial(runs.__setitem__, identity, 1), resync_period=3600.0)
        elector = LeaderElector(
            kube.api_client(),
            "dns",
            "homelab-dns",
            identity,
            lease_duration=3600.0,
            renew_deadline=1.5,
            retry_period=0.1,
            on_started_leading=reconciler.start,
            on_stopped_leading=reconciler.stop,
        )
        electors.append(elector)
    first, second = electors
    first.start()
    wait_for(lambda: runs["dns-0"] == 1)
    second.start()
    wait_for(lambda: kube.request_count("fetch", "leases") >= 6)
    assert runs["dns-1"] == 0
    first.stop()
    wait_for(lambda: runs["dns-1"] == 1)
    second.stop()
