"""The whole service: Ingresses in the emulated Kubernetes API (through the real client) -> records served.

The embedded server and a real BIND9 (RFC 2136 + TSIG) are both checked with real DNS queries.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import dns.resolver
import kubernetes.client
import pytest
from dns_helpers import KEY_NAME, ZONE, Bind, free_port

from homelab_common.k8s import Backoff
from homelab_common.k8s.testing import KubeEmulator, kube, wait_for
from homelab_dns.app import Runtime, build_runtime
from homelab_dns.settings import Settings

__all__ = ["kube"]

FAST = Backoff(initial=0.05, maximum=0.5)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "owner_id": "homelab",
        "policy": "sync",
        "domain_filter": [ZONE],
        "dns_host": "127.0.0.1",
        "dns_port": free_port(),
        "debounce_seconds": 0.05,
        "resync_seconds": 30,
        "backoff_max_seconds": 1,
        "identity": "dns-0",
    }
    values.update(overrides)
    return Settings(**values)


def ingress(name: str, host: str, ip: str = "192.168.1.10", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "apps", "annotations": annotations},
        "spec": {"rules": [{"host": host}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


def answers(port: int, name: str, rtype: str = "A") -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    try:
        return sorted(r.to_text().strip('"') for r in resolver.resolve(name, rtype, lifetime=5))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


@pytest.fixture
def networking(kube: KubeEmulator) -> kubernetes.client.NetworkingV1Api:
    return kubernetes.client.NetworkingV1Api(kube.api_client())


def running(kube: KubeEmulator, s: Settings) -> Runtime:
    """A started runtime whose watches are open.

    The emulator does not replay changes made between a list and the watch that follows it (a real API
    server does, from the list's resourceVersion), so tests create objects only once the watches are open.
    """
    watches = kube.request_count("watch", "ingresses"), kube.request_count("watch", "services")
    runtime = build_runtime(s, api_client=kube.api_client(), kube_backoff=FAST)
    runtime.start()
    wait_for(lambda: runtime.controller.ready() is None)
    wait_for(lambda: kube.request_count("watch", "ingresses") > watches[0])
    wait_for(lambda: kube.request_count("watch", "services") > watches[1])
    return runtime


@pytest.fixture
def embedded(kube: KubeEmulator) -> Iterator[Runtime]:
    runtime = running(kube, settings())
    yield runtime
    runtime.stop()


def test_embedded_records_follow_ingresses(
    embedded: Runtime, networking: kubernetes.client.NetworkingV1Api, kube: KubeEmulator
) -> None:
    port = embedded.settings.dns_port
    wait_for(lambda: embedded.controller.ready() is None)
    networking.create_namespaced_ingress("apps", ingress("web", f"web.{ZONE}"))
    wait_for(lambda: answers(port, f"web.{ZONE}") == ["192.168.1.10"])
    assert answers(port, f"a-web.{ZONE}", "TXT") == [
        "heritage=external-dns,external-dns/owner=homelab,external-dns/resource=ingress/apps/web"
    ]
    networking.replace_namespaced_ingress("web", "apps", ingress("web", f"web.{ZONE}", ip="192.168.1.99"))
    wait_for(lambda: answers(port, f"web.{ZONE}") == ["192.168.1.99"])
    networking.delete_namespaced_ingress("web", "apps")
    wait_for(lambda: answers(port, f"web.{ZONE}") == [])


def test_one_bad_ingress_gets_an_event_and_blocks_nothing(
    embedded: Runtime, networking: kubernetes.client.NetworkingV1Api, kube: KubeEmulator
) -> None:
    port = embedded.settings.dns_port
    wait_for(lambda: embedded.kube is not None and embedded.kube.is_leader())
    networking.create_namespaced_ingress(
        "apps", ingress("bad", f"bad.{ZONE}", **{"external-dns.kubernetes.io/ttl": "forever"})
    )
    networking.create_namespaced_ingress("apps", ingress("good", f"good.{ZONE}"))
    wait_for(lambda: answers(port, f"good.{ZONE}") == ["192.168.1.10"])
    assert answers(port, f"bad.{ZONE}") == []

    def event() -> list[dict[str, Any]]:
        return [
            e
            for e in kube.objects("events.k8s.io/v1/events", namespace="apps").values()
            if e["regarding"]["name"] == "bad"
        ]

    wait_for(event)
    assert event()[0]["reason"] == "InvalidEndpoint"
    assert "forever" in event()[0]["note"]
    assert [p.resource for p in embedded.controller.state.desired.problems] == ["ingress/apps/bad"]


def test_load_balancer_service_is_published(embedded: Runtime, kube: KubeEmulator) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    core.create_namespaced_service(
        "iot",
        {
            "metadata": {
                "name": "mqtt",
                "namespace": "iot",
                "annotations": {"external-dns.alpha.kubernetes.io/hostname": f"mqtt.{ZONE}"},
            },
            "spec": {"type": "LoadBalancer", "ports": [{"port": 1883}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.30"}]}},
        },
    )
    wait_for(lambda: answers(embedded.settings.dns_port, f"mqtt.{ZONE}") == ["192.168.1.30"])


def rfc2136_settings(bind: Bind, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "rfc2136",
        "rfc2136_server": "127.0.0.1",
        "rfc2136_port": bind.port,
        "rfc2136_zone": ZONE,
        "tsig_key_name": KEY_NAME,
        "tsig_secret": bind.secret,
        "rfc2136_timeout": 2,
    }
    return settings(**{**values, **overrides})


def test_bind_records_follow_ingresses_and_spare_unowned_ones(
    bind: Bind, kube: KubeEmulator, networking: kubernetes.client.NetworkingV1Api
) -> None:
    runtime = running(kube, rfc2136_settings(bind))
    try:
        networking.create_namespaced_ingress("apps", ingress("web", f"web.{ZONE}"))
        networking.create_namespaced_ingress("apps", ingress("taken", f"taken.{ZONE}"))
        wait_for(lambda: answers(bind.port, f"web.{ZONE}") == ["192.168.1.10"])
        networking.replace_namespaced_ingress("web", "apps", ingress("web", f"www.{ZONE}"))
        wait_for(lambda: answers(bind.port, f"www.{ZONE}") == ["192.168.1.10"])
        wait_for(lambda: answers(bind.port, f"web.{ZONE}") == [])
        networking.delete_namespaced_ingress("web", "apps")
        wait_for(lambda: answers(bind.port, f"www.{ZONE}") == [])
        assert answers(bind.port, f"taken.{ZONE}") == ["10.9.9.10"]
        assert answers(bind.port, f"legacy.{ZONE}") == ["10.9.9.9"]
        runtime.controller.sync()
        assert [(v.name, v.state) for v in runtime.controller.state.plan.views if v.state == "blocked"] == [
            (f"taken.{ZONE}", "blocked")
        ]
    finally:
        runtime.stop()


def test_stopped_bind_is_retried_and_recovers(
    bind: Bind, kube: KubeEmulator, networking: kubernetes.client.NetworkingV1Api
) -> None:
    runtime = running(kube, rfc2136_settings(bind))
    try:
        wait_for(lambda: runtime.controller.state.last_success is not None)
        bind.stop()
        networking.create_namespaced_ingress("apps", ingress("web", f"web.{ZONE}"))
        wait_for(lambda: runtime.controller.state.consecutive_errors >= 2)
        assert "connection refused" in runtime.controller.state.last_error
        bind.start()
        wait_for(lambda: answers(bind.port, f"web.{ZONE}") == ["192.168.1.10"])
        wait_for(lambda: runtime.controller.state.consecutive_errors == 0)
    finally:
        runtime.stop()


def test_wrong_tsig_key_is_reported_and_recovers_once_the_server_has_it(
    bind: Bind, kube: KubeEmulator, networking: kubernetes.client.NetworkingV1Api
) -> None:
    ours = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MDA="
    runtime = running(kube, rfc2136_settings(bind, tsig_secret=ours))
    try:
        networking.create_namespaced_ingress("apps", ingress("web", f"web.{ZONE}"))
        wait_for(lambda: runtime.controller.state.consecutive_errors >= 2)
        assert "TSIG key 'homelab-key' rejected" in runtime.controller.state.last_error
        conf = bind.directory / "named.conf"
        conf.write_text(conf.read_text().replace(bind.secret, ours))
        assert bind.process is not None
        bind.process.send_signal(signal.SIGHUP)  # named reloads its configuration: the key is fixed server-side
        wait_for(lambda: answers(bind.port, f"web.{ZONE}") == ["192.168.1.10"])
        wait_for(lambda: runtime.controller.state.consecutive_errors == 0)
    finally:
        runtime.stop()


def test_only_the_leader_writes_and_the_other_takes_over(
    bind: Bind, kube: KubeEmulator, networking: kubernetes.client.NetworkingV1Api
) -> None:
    first = running(kube, rfc2136_settings(bind, identity="dns-0"))
    wait_for(lambda: first.controller.is_leader())
    second = running(kube, rfc2136_settings(bind, identity="dns-1"))
    try:
        networking.create_namespaced_ingress("apps", ingress("web", f"web.{ZONE}"))
        wait_for(lambda: answers(bind.port, f"web.{ZONE}") == ["192.168.1.10"])
        first.controller.stop()  # the leader stops syncing but keeps its Lease
        networking.create_namespaced_ingress("apps", ingress("api", f"api.{ZONE}"))
        wait_for(lambda: second.kube is not None and len(second.kube.ingresses.list()) == 2)
        result = second.controller.sync()
        assert (result.ok, result.applied) == (True, False)
        assert [v.state for v in second.controller.state.plan.views if v.name == f"api.{ZONE}"] == ["create"]
        assert answers(bind.port, f"api.{ZONE}") == []
        first.stop()  # releases the Lease: the follower takes over and writes
        wait_for(lambda: second.controller.is_leader())
        wait_for(lambda: answers(bind.port, f"api.{ZONE}") == ["192.168.1.10"])
    finally:
        first.stop()
        second.stop()


def test_names_outside_the_rfc2136_zone_are_reported_not_sent(
    bind: Bind, kube: KubeEmulator, networking: kubernetes.client.NetworkingV1Api
) -> None:
    runtime = running(kube, rfc2136_settings(bind, domain_filter=[ZONE, "other.test"]))
    try:
        networking.create_namespaced_ingress("apps", ingress("outside", "app.other.test"))
        networking.create_namespaced_ingress("apps", ingress("inside", f"app.{ZONE}"))
        wait_for(lambda: answers(bind.port, f"app.{ZONE}") == ["192.168.1.10"])
        wait_for(lambda: [p.resource for p in runtime.controller.state.desired.problems] == ["ingress/apps/outside"])
        assert "outside the zone(s) example.test" in runtime.controller.state.desired.problems[0].reason
        assert runtime.controller.state.consecutive_errors == 0
    finally:
        runtime.stop()
