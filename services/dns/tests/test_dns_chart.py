"""charts/dns renders what the service needs: two replicas, port 53 -> 5353 on UDP and TCP, RBAC, alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from chart_harness import REPO, Document, build_dependencies, find, render_chart
from homelab_common.settings import load_settings
from homelab_dns.settings import Settings

CHART = REPO / "charts" / "dns"


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    build_dependencies(CHART)
    return render_chart(CHART, [])


def test_two_replicas_with_the_leader_identity_from_the_pod(
    docs: list[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = find(docs, "Deployment")[0].body
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HOMELAB_DNS_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HOMELAB_DNS_POLICY"]["value"] == "sync"
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    settings = load_settings(Settings)  # the chart's environment is a valid configuration
    assert (settings.dns_port, settings.domain_filter) == (5353, ["home.arpa"])


def test_dns_service_maps_53_to_the_unprivileged_port(docs: list[Document]) -> None:
    service = next(d.body for d in find(docs, "Service") if d.body["spec"]["type"] == "LoadBalancer")
    assert sorted((p["protocol"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]) == [
        ("TCP", 53, "dns-tcp"),
        ("UDP", 53, "dns-udp"),
    ]
    ports = find(docs, "Deployment")[0].body["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in ports} >= {
        ("dns-udp", 5353, "UDP"),
        ("dns-tcp", 5353, "TCP"),
    }


def test_rbac_allows_watching_events_and_the_lease(docs: list[Document]) -> None:
    cluster = find(docs, "ClusterRole")[0].body["rules"]
    granted = {
        (g, r, v) for rule in cluster for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {("networking.k8s.io", "ingresses", "watch"), ("", "services", "watch")} <= granted
    assert ("events.k8s.io", "events", "create") in granted
    lease = find(docs, "Role")[0].body["rules"]
    assert {v for rule in lease if "leases" in rule["resources"] for v in rule["verbs"]} == {"get", "create", "update"}


def test_alerts_on_stale_sync_and_persistent_errors(docs: list[Document]) -> None:
    rules = find(docs, "PrometheusRule")[0].body["spec"]["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "homelab_dns_last_successful_sync_timestamp_seconds" in exprs["DnsSyncStale"]
    assert "homelab_dns_consecutive_sync_errors" in exprs["DnsSyncErrors"]
    assert find(docs, "ServiceMonitor")


def test_rfc2136_fixture_drops_the_dns_service() -> None:
    docs = render_chart(CHART, [Path(CHART / "ci" / "rfc2136-values.yaml")])
    assert [d.body["spec"]["type"] for d in find(docs, "Service")] == ["ClusterIP"]


def test_cloudflare_fixture_is_a_valid_configuration_without_dns_service(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render_chart(CHART, [Path(CHART / "ci" / "cloudflare-values.yaml")])
    assert [d.body["spec"]["type"] for d in find(docs, "Service")] == ["ClusterIP"]
    container = find(docs, "Deployment")[0].body["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HOMELAB_DNS_CLOUDFLARE_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "dns-cloudflare-api-token"
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    monkeypatch.setenv("HOMELAB_DNS_CLOUDFLARE_API_TOKEN", "from-the-secret")
    settings = load_settings(Settings)
    assert (settings.provider, settings.effective_cloudflare_zone) == ("cloudflare", "example.com")
    assert settings.cloudflare_tunnel_service == "http://traefik.kube-system.svc.cluster.local:80"
