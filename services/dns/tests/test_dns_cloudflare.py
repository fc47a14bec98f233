"""The Cloudflare provider and tunnel routes against a FAKE of Cloudflare's v4 API (homelab_common.cloudflare_fake).

The fake is not Cloudflare: it serves real HTTP on 127.0.0.1 and follows Cloudflare's published API documentation
for the endpoints we call (see its docstring for the strict readings it takes where the documentation is silent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from test_dns_service import answers, ingress, running, settings

import homelab_common.cloudflare_fake
from homelab_common.cloudflare import (
    DNS_EDIT,
    DNS_READ,
    TUNNEL_EDIT,
    TUNNEL_READ,
    ZONE_READ,
    CloudflareApi,
    CloudflareError,
    check_token,
)
from homelab_common.cloudflare_fake import FakeCloudflare, fake_cloudflare
from homelab_common.k8s.testing import KubeEmulator, kube, wait_for
from homelab_dns.app import create_app
from homelab_dns.controller import Controller, StaticSource
from homelab_dns.core import Endpoint, Record, cloudflare_endpoints, registry_value
from homelab_dns.providers.cloudflare import Cloudflare, tunnel_config, txt_value
from homelab_dns.settings import Settings

__all__ = ["kube"]

ZONE = "example.com"
TOKEN = "fake-token-0123456789"
FAKE_ACCOUNT = "0123456789abcdef0123456789abcdef"
FAKE_TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
TUNNEL_HOST = f"{FAKE_TUNNEL}.cfargotunnel.com"
TRAEFIK = "http://traefik.kube-system.svc.cluster.local:80"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    with fake_cloudflare() as fake:
        fake.add_token(TOKEN)
        fake.add_zone(ZONE)
        fake.add_tunnel(FAKE_ACCOUNT, FAKE_TUNNEL)
        yield fake


class Waits:
    """Records the waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def api(cf: FakeCloudflare, token: str = TOKEN, **options: Any) -> CloudflareApi:
    return CloudflareApi(token, cf.url, timeout=5, **{"sleep": Waits(), **options})


def provider(cf: FakeCloudflare, token: str = TOKEN, *, tunnel: bool = True, **options: Any) -> Cloudflare:
    extra = {"account_id": FAKE_ACCOUNT, "tunnel_id": FAKE_TUNNEL, "service": TRAEFIK} if tunnel else {}
    return Cloudflare(api(cf, token, **options), ZONE, per_page=100, **extra)


def cloudflare_settings(url: str, token: str = TOKEN, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "cloudflare",
        "domain_filter": [ZONE],
        "cloudflare_api_url": url,
        "cloudflare_api_token": token,
        "cloudflare_account_id": FAKE_ACCOUNT,
        "cloudflare_tunnel_id": FAKE_TUNNEL,
        "cloudflare_retries": 2,
        "lease_name": "homelab-dns-public",
        "identity": "dns-public-0",
    }
    return settings(**{**values, **overrides})


def controller(target: Cloudflare, *records: Record, resource: str = "ingress/apps/web") -> Controller:
    source = StaticSource([Endpoint(r, resource) for r in records], [])
    return Controller(target, [source], owner="homelab", policy="sync", domains=[ZONE])


def test_the_fake_says_it_is_a_fake() -> None:
    assert "FAKE" in (homelab_common.cloudflare_fake.__doc__ or "")
    assert "not Cloudflare" in (homelab_common.cloudflare_fake.__doc__ or "")


# -- the token ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permissions", "missing"),
    [
        ({ZONE_READ, DNS_EDIT, TUNNEL_EDIT}, ()),
        ({ZONE_READ, DNS_READ, TUNNEL_EDIT}, (DNS_EDIT,)),
        ({ZONE_READ, DNS_EDIT, TUNNEL_READ}, (TUNNEL_EDIT,)),
        ({ZONE_READ, TUNNEL_EDIT}, (DNS_EDIT,)),
        ({DNS_EDIT, TUNNEL_EDIT}, (ZONE_READ, DNS_EDIT, TUNNEL_EDIT)),
    ],
)
def test_token_check_names_each_missing_permission(
    cf: FakeCloudflare, permissions: set[str], missing: tuple[str, ...]
) -> None:
    cf.add_token("scoped", frozenset(permissions))
    found = check_token(api(cf, "scoped"), ZONE, account_id=FAKE_ACCOUNT, tunnel_id=FAKE_TUNNEL, write_probe=True)
    assert found.missing == missing
    # the write probe leaves nothing behind, and the tunnel configuration is a valid one
    assert cf.zone_records(ZONE) == []
    if TUNNEL_EDIT not in missing:
        assert cf.tunnel_config(FAKE_ACCOUNT, FAKE_TUNNEL) == {"ingress": [{"service": "http_status:404"}]}


def test_invalid_or_expired_token_is_an_error_saying_so(cf: FakeCloudflare) -> None:
    cf.add_token("old", status="expired")
    with pytest.raises(CloudflareError, match="refused with 401"):
        check_token(api(cf, "unknown-token"), ZONE)
    with pytest.raises(CloudflareError, match="expired"):
        check_token(api(cf, "old"), ZONE)


def test_missing_dns_edit_is_reported_at_the_first_write_and_in_status(cf: FakeCloudflare) -> None:
    cf.add_token("read-only", frozenset({ZONE_READ, DNS_READ, TUNNEL_EDIT}))
    target = provider(cf, "read-only")
    loop = controller(target, Record(f"web.{ZONE}", "CNAME", (TUNNEL_HOST,), 1, True))
    result = loop.sync()
    assert not result.ok
    assert f"lacks {DNS_EDIT}" in result.error
    assert target.missing == (DNS_EDIT,)
    assert loop.state.consecutive_errors == 1  # the loop goes on: retried with backoff, never an exit
    cf.add_token("read-only")  # the user edits the token: the next sync publishes, nothing restarted
    assert loop.sync().ok
    assert target.missing == ()
    assert [r["content"] for r in cf.find(ZONE, f"web.{ZONE}", "CNAME")] == [TUNNEL_HOST]


def test_app_reports_a_missing_permission_in_status_readyz_and_metrics(cf: FakeCloudflare) -> None:
    cf.add_token("no-tunnel", frozenset({ZONE_READ, DNS_EDIT}))
    app = create_app(cloudflare_settings(cf.url, token="no-tunnel", kubernetes=False))
    runtime = app.extensions["homelab_dns"]
    try:
        client = app.test_client()
        assert client.post("/sync").status_code == 503
        status = client.get("/status").get_json()
        assert status["missing_permissions"] == [TUNNEL_EDIT]
        assert TUNNEL_EDIT in status["last_error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert TUNNEL_EDIT in ready.get_json()["checks"]["cloudflare-token"]
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").get_data(as_text=True)
        assert f'homelab_dns_cloudflare_missing_permission{{permission="{TUNNEL_EDIT}"}} 1.0' in metrics
        cf.add_token("no-tunnel")  # the user fixes the token: the next sync succeeds without a restart
        assert client.post("/sync").status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        runtime.stop()


def test_token_never_appears_in_errors(cf: FakeCloudflare) -> None:
    cf.fail(500, times=10)
    with pytest.raises(CloudflareError) as error:
        api(cf, retries=1).call("GET", "/user/tokens/verify")
    assert TOKEN not in str(error.value)


# -- rate limits and server errors --------------------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(cf: FakeCloudflare) -> None:
    waits = Waits()
    cf.fail(429, times=2, retry_after="3", path="/dns_records")
    target = Cloudflare(CloudflareApi(TOKEN, cf.url, sleep=waits), ZONE)
    assert target.records() == []
    assert waits.waits == [3.0, 3.0]


def test_5xx_is_retried_with_backoff_and_bounded(cf: FakeCloudflare) -> None:
    waits = Waits()
    client = CloudflareApi(TOKEN, cf.url, retries=3, backoff=0.5, sleep=waits)
    cf.fail(502, times=2)
    assert client.call("GET", "/user/tokens/verify")["result"]["status"] == "active"
    assert waits.waits == [0.5, 1.0]
    cf.fail(503, times=100)
    before = cf.count("GET")
    with pytest.raises(CloudflareError, match="failed with 503"):
        client.call("GET", "/user/tokens/verify")
    assert cf.count("GET") - before == 4  # one call and three retries, then the sync fails (and is retried later)
    assert waits.waits[2:] == [0.5, 1.0, 2.0]


def test_rate_limit_that_lasts_fails_the_sync_not_the_process(cf: FakeCloudflare) -> None:
    target = provider(cf, retries=2)
    cf.fail(429, times=100, retry_after="1")
    result = controller(target).sync()
    assert not result.ok
    assert "rate limited" in result.error


# -- records, pagination, ownership -------------------------------------------------------------------------------


def test_a_zone_of_2000_records_is_read_page_by_page(cf: FakeCloudflare) -> None:
    for i in range(2000):
        cf.add_record(ZONE, "A", f"host{i}.{ZONE}", f"10.0.{i // 250}.{i % 250}")
    target = provider(cf, tunnel=False)
    records = target.records()
    assert len(records) == 2000
    assert cf.count("GET", "/dns_records") == 1 + 20  # the token probe's one, then 20 pages of 100
    pages = [q for m, p, q in cf.calls if m == "GET" and p.endswith("/dns_records") and q.get("per_page") == "100"]
    assert [q["page"] for q in pages] == [str(n) for n in range(1, 21)]


def test_records_created_updated_deleted_with_ownership(cf: FakeCloudflare) -> None:
    target = provider(cf, tunnel=False)
    a = Record(f"app.{ZONE}", "A", ("192.0.2.1", "192.0.2.2"), 300, False)
    assert controller(target, a).sync().ok
    assert sorted(r["content"] for r in cf.find(ZONE, f"app.{ZONE}", "A")) == ["192.0.2.1", "192.0.2.2"]
    [owner] = cf.find(ZONE, f"a-app.{ZONE}", "TXT")
    assert txt_value(owner["content"]) == registry_value("homelab", "ingress/apps/web")

    b = Record(f"app.{ZONE}", "A", ("192.0.2.3",), 1, True)
    assert controller(target, b).sync().ok
    [only] = cf.find(ZONE, f"app.{ZONE}", "A")
    assert (only["content"], only["proxied"], only["ttl"]) == ("192.0.2.3", True, 1)

    loop = controller(target)
    assert loop.sync().ok
    assert cf.zone_records(ZONE) == []
    assert loop.sync().ok
    assert loop.state.plan.empty  # nothing left to do: the zone read back matches


def test_records_of_others_are_never_changed(cf: FakeCloudflare) -> None:
    cf.add_record(ZONE, "A", f"mine-not.{ZONE}", "203.0.113.1")  # no ownership record
    cf.add_record(ZONE, "CNAME", f"theirs.{ZONE}", "elsewhere.example.net")
    cf.add_record(ZONE, "TXT", f"cname-theirs.{ZONE}", '"' + registry_value("other-cluster", "ingress/x/y") + '"')
    cf.add_record(ZONE, "A", f"adopt.{ZONE}", "203.0.113.9")
    cf.add_record(ZONE, "TXT", f"a-adopt.{ZONE}", '"' + registry_value("homelab", "ingress/apps/old") + '"')
    cf.add_record(ZONE, "MX", ZONE, "mail.example.net", priority=10)
    before = {r["id"]: r for r in cf.zone_records(ZONE)}
    wanted = [
        Record(f"mine-not.{ZONE}", "CNAME", (TUNNEL_HOST,), 1, True),
        Record(f"theirs.{ZONE}", "CNAME", (TUNNEL_HOST,), 1, True),
        Record(f"adopt.{ZONE}", "A", ("192.0.2.50",), 300, False),
    ]
    loop = controller(provider(cf, tunnel=False), *wanted)
    assert loop.sync().ok
    after = {r["id"]: r for r in cf.zone_records(ZONE)}
    changed = {i for i in before if before[i] != after.get(i)}
    assert {before[i]["name"] for i in changed} == {f"adopt.{ZONE}", f"a-adopt.{ZONE}"}  # ours (same owner): adopted
    assert [r["content"] for r in cf.find(ZONE, f"adopt.{ZONE}", "A")] == ["192.0.2.50"]
    states = {(v.name, v.state) for v in loop.state.plan.views}
    assert {(f"mine-not.{ZONE}", "blocked"), (f"theirs.{ZONE}", "blocked")} <= states
    # and nothing of theirs is deleted when we want nothing
    assert controller(provider(cf, tunnel=False)).sync().ok
    assert {r["name"] for r in cf.zone_records(ZONE)} == {
        f"mine-not.{ZONE}",
        f"theirs.{ZONE}",
        f"cname-theirs.{ZONE}",
        ZONE,
    }


# -- tunnel routes ------------------------------------------------------------------------------------------------


def test_tunnel_config_keeps_the_users_rules_and_ends_with_the_catch_all() -> None:
    current = {
        "ingress": [
            {"hostname": "ssh.example.com", "service": "ssh://10.0.0.5:22"},
            {"hostname": "gone.example.com", "service": TRAEFIK},
            {"service": "http_status:503"},
        ],
        "originRequest": {"connectTimeout": 10},
    }
    config = tunnel_config(current, ["b.example.com", "a.example.com"], TRAEFIK)
    assert config == {
        "ingress": [
            {"hostname": "ssh.example.com", "service": "ssh://10.0.0.5:22"},
            {"hostname": "a.example.com", "service": TRAEFIK},
            {"hostname": "b.example.com", "service": TRAEFIK},
            {"service": "http_status:404"},
        ],
        "originRequest": {"connectTimeout": 10},
    }


def test_public_marks_and_tunnel_target_select_ingresses() -> None:
    public = ingress("a", f"a.{ZONE}", **{"homelab.dev/public": "true"})
    targeted = ingress("b", f"b.{ZONE}", **{"external-dns.alpha.kubernetes.io/target": TUNNEL_HOST})
    private = ingress("c", f"c.{ZONE}")
    off = ingress("d", f"d.{ZONE}", **{"homelab.dev/public": "false"})
    found = {
        ep.record.name: ep.record
        for obj in (public, targeted, private, off)
        for ep in cloudflare_endpoints(obj, "ingress", 300, TUNNEL_HOST)[0]
    }
    assert found == {
        f"a.{ZONE}": Record(f"a.{ZONE}", "CNAME", (TUNNEL_HOST,), 1, True),
        f"b.{ZONE}": Record(f"b.{ZONE}", "CNAME", (TUNNEL_HOST,), 1, True),
    }
    # without a tunnel: the usual target, proxied as external-dns's annotation says; a bad value is reported
    proxied = ingress(
        "e",
        f"e.{ZONE}",
        **{"homelab.dev/public": "true", "external-dns.alpha.kubernetes.io/cloudflare-proxied": "true"},
    )
    assert cloudflare_endpoints(proxied, "ingress", 300)[0][0].record == Record(
        f"e.{ZONE}", "A", ("192.168.1.10",), 1, True
    )
    bad = ingress(
        "f", f"f.{ZONE}", **{"homelab.dev/public": "true", "external-dns.alpha.kubernetes.io/cloudflare-proxied": "yes"}
    )
    assert "neither true nor false" in cloudflare_endpoints(bad, "ingress", 300)[1][0].reason


def test_cloudflare_settings_need_a_token_and_a_complete_tunnel() -> None:
    base = {"owner_id": "homelab", "policy": "sync", "domain_filter": [ZONE], "provider": "cloudflare"}
    with pytest.raises(ValueError, match="HOMELAB_DNS_CLOUDFLARE_API_TOKEN"):
        Settings(**base)
    with pytest.raises(ValueError, match="go together"):
        Settings(**base, cloudflare_api_token=TOKEN, cloudflare_tunnel_id=FAKE_TUNNEL)
    with pytest.raises(ValueError, match="cloudflare_tunnel_id"):
        Settings(**base, cloudflare_api_token=TOKEN, cloudflare_tunnel_id="not-a-uuid")


# -- the whole loop through the Kubernetes emulator ---------------------------------------------------------------


def test_public_ingress_gets_a_tunnel_route_and_cname_private_stays_private(
    cf: FakeCloudflare, kube: KubeEmulator
) -> None:
    networking = kubernetes.client.NetworkingV1Api(kube.api_client())
    lan = running(kube, settings(domain_filter=[ZONE]))  # the LAN's embedded server, beside it
    runtime = running(kube, cloudflare_settings(cf.url))

    def route_hosts() -> list[str]:
        config = cf.tunnel_config(FAKE_ACCOUNT, FAKE_TUNNEL) or {}
        return [r.get("hostname", "*") for r in config.get("ingress", [])]

    try:
        networking.create_namespaced_ingress("apps", ingress("shop", f"shop.{ZONE}", **{"homelab.dev/public": "true"}))
        networking.create_namespaced_ingress("apps", ingress("nas", f"nas.{ZONE}"))
        wait_for(lambda: route_hosts() == [f"shop.{ZONE}", "*"])
        [cname] = cf.find(ZONE, f"shop.{ZONE}", "CNAME")
        assert (cname["content"], cname["proxied"]) == (TUNNEL_HOST, True)
        assert cf.tunnel_config(FAKE_ACCOUNT, FAKE_TUNNEL) == {
            "ingress": [{"hostname": f"shop.{ZONE}", "service": TRAEFIK}, {"service": "http_status:404"}]
        }
        assert [r["name"] for r in cf.zone_records(ZONE) if r["name"].endswith(f"nas.{ZONE}")] == []
        # the LAN keeps resolving every app, public or not
        wait_for(lambda: answers(lan.settings.dns_port, f"nas.{ZONE}") == ["192.168.1.10"])
        assert answers(lan.settings.dns_port, f"shop.{ZONE}") == ["192.168.1.10"]

        body = ingress("shop", f"shop.{ZONE}")  # the mark removed: route and CNAME go
        networking.replace_namespaced_ingress("shop", "apps", body)
        wait_for(lambda: route_hosts() == ["*"])
        wait_for(lambda: cf.zone_records(ZONE) == [])
        assert answers(lan.settings.dns_port, f"shop.{ZONE}") == ["192.168.1.10"]
    finally:
        runtime.stop()
        lan.stop()
