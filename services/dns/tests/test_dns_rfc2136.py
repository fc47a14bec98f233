"""The RFC 2136 provider against a real BIND9: AXFR to read, TSIG-signed updates to write."""

from __future__ import annotations

import socket

import dns.resolver
import pytest
from dns_helpers import KEY_NAME, ZONE, Bind

from homelab_dns.core import Endpoint, Plan, Record, desired_state, make_plan
from homelab_dns.providers import ProviderError
from homelab_dns.providers.rfc2136 import Rfc2136


def provider(bind: Bind, secret: str | None = None, key: str = KEY_NAME) -> Rfc2136:
    return Rfc2136("127.0.0.1", ZONE, key, secret or bind.secret, port=bind.port, timeout=2)


def resolve(bind: Bind, name: str, rtype: str = "A") -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = bind.port
    try:
        answer = resolver.resolve(f"{name}.{ZONE}", rtype, lifetime=5)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.resolver.NoAnswer:
        return []
    return sorted(r.to_text().strip('"') for r in answer)


def sync(p: Rfc2136, records: list[Record], policy: str = "sync") -> None:
    desired = desired_state([Endpoint(r, f"ingress/apps/{r.name.split('.')[0]}") for r in records], [], [ZONE])
    p.apply(make_plan(desired.records, p.records(), "homelab", policy))  # type: ignore[arg-type]


def test_zone_is_read_by_axfr(bind: Bind) -> None:
    keys = {(r.name, r.type): r for r in provider(bind).records()}
    assert keys[(f"legacy.{ZONE}", "A")].targets == ("10.9.9.9",)
    assert (ZONE, "SOA") in keys
    assert keys[(ZONE, "NS")].targets == (f"ns.{ZONE}",)


def test_records_appear_change_and_disappear_with_ownership(bind: Bind) -> None:
    p = provider(bind)
    sync(p, [Record(f"app.{ZONE}", "A", ("10.0.0.1",), 60), Record(f"www.{ZONE}", "CNAME", (f"app.{ZONE}",), 60)])
    assert resolve(bind, "app") == ["10.0.0.1"]
    assert resolve(bind, "www", "CNAME") == [f"app.{ZONE}."]
    assert resolve(bind, "a-app", "TXT") == [
        "heritage=external-dns,external-dns/owner=homelab,external-dns/resource=ingress/apps/app"
    ]
    sync(p, [Record(f"app.{ZONE}", "A", ("10.0.0.2", "10.0.0.3"), 60)])
    assert resolve(bind, "app") == ["10.0.0.2", "10.0.0.3"]
    assert resolve(bind, "www", "CNAME") == []
    assert resolve(bind, "cname-www", "TXT") == []
    sync(p, [])
    assert resolve(bind, "app") == []
    assert resolve(bind, "a-app", "TXT") == []
    assert resolve(bind, "legacy") == ["10.9.9.9"]


def test_unowned_records_survive_a_sync(bind: Bind) -> None:
    p = provider(bind)
    sync(p, [Record(f"taken.{ZONE}", "A", ("10.0.0.7",), 60), Record(f"new.{ZONE}", "A", ("10.0.0.8",), 60)])
    assert resolve(bind, "taken") == ["10.9.9.10"]
    assert resolve(bind, "new") == ["10.0.0.8"]
    sync(p, [])
    assert resolve(bind, "taken") == ["10.9.9.10"]
    assert resolve(bind, "legacy") == ["10.9.9.9"]
    assert resolve(bind, "new") == []


def test_upsert_only_never_deletes(bind: Bind) -> None:
    p = provider(bind)
    sync(p, [Record(f"keep.{ZONE}", "A", ("10.0.0.1",), 60)], "upsert-only")
    sync(p, [], "upsert-only")
    assert resolve(bind, "keep") == ["10.0.0.1"]


def test_wrong_tsig_secret_is_a_clear_error(bind: Bind) -> None:
    wrong = provider(bind, secret="c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MDA=")
    with pytest.raises(ProviderError, match=r"TSIG key 'homelab-key' rejected") as read_error:
        wrong.records()
    with pytest.raises(ProviderError, match=r"TSIG key 'homelab-key' rejected") as write_error:
        wrong.apply(Plan(create=[Record(f"x.{ZONE}", "A", ("10.0.0.1",), 60)]))
    for error in (read_error.value, write_error.value):
        assert "c2VjcmV0" not in str(error)
    assert resolve(bind, "x") == []


def test_unknown_tsig_key_name_is_a_clear_error(bind: Bind) -> None:
    with pytest.raises(ProviderError, match=r"TSIG key 'nobody' rejected"):
        provider(bind, key="nobody").records()


def test_stopped_server_is_a_clear_error_and_recovers(bind: Bind) -> None:
    p = provider(bind)
    bind.stop()
    with pytest.raises(ProviderError, match="connection refused"):
        p.records()
    bind.start()
    assert any(r.name == f"legacy.{ZONE}" for r in p.records())


def test_invalid_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="base64"):
        Rfc2136("127.0.0.1", ZONE, KEY_NAME, "not base64!")


def test_a_record_can_become_a_cname_and_wildcards_work(bind: Bind) -> None:
    p = provider(bind)
    sync(p, [Record(f"lb.{ZONE}", "A", ("10.0.0.1",), 60), Record(f"*.apps.{ZONE}", "A", ("10.0.0.2",), 60)])
    assert resolve(bind, "anything.apps") == ["10.0.0.2"]
    assert resolve(bind, "a-*.apps", "TXT") != []
    sync(p, [Record(f"lb.{ZONE}", "CNAME", ("tunnel.example.net",), 60)])
    assert resolve(bind, "lb", "CNAME") == ["tunnel.example.net."]
    assert resolve(bind, "a-lb", "TXT") == []
    assert resolve(bind, "cname-lb", "TXT") != []
    assert resolve(bind, "anything.apps") == []


def test_refused_update_is_a_clear_error(bind: Bind) -> None:
    reader = provider(bind, key="reader")  # may transfer the zone, may not update it
    assert reader.records()
    with pytest.raises(ProviderError, match="update failed with REFUSED: the server does not allow updates"):
        reader.apply(Plan(create=[Record(f"x.{ZONE}", "A", ("10.0.0.1",), 60)]))


def test_silent_server_times_out_with_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        p = Rfc2136("127.0.0.1", ZONE, KEY_NAME, "c2VjcmV0", port=port, timeout=0.5)
        with pytest.raises(ProviderError, match=rf"127.0.0.1:{port} \(zone {ZONE}\): zone transfer failed: timed out"):
            p.records()
