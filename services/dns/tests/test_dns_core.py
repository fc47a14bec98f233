"""Sources, validation, the external-dns ownership registry and the plan: pure functions, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from homelab_dns.core import (
    Endpoint,
    InvalidRecord,
    Record,
    StaticRecord,
    applied,
    desired_state,
    ingress_endpoints,
    make_plan,
    parse_registry_value,
    parse_ttl,
    registry_key,
    registry_name,
    registry_value,
    service_endpoints,
    static_endpoints,
)

Z = "home.example.com"


def ingress(name: str, hosts: list[str], ip: str | None = "192.168.1.10", **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "apps", "annotations": annotations},
        "spec": {"rules": [{"host": h} for h in hosts]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}] if ip else []}},
    }


def records(obj: dict[str, Any]) -> list[Record]:
    found, problems = ingress_endpoints(obj, 300)
    assert problems == []
    return [e.record for e in found]


def test_ingress_rule_hosts_point_at_the_load_balancer() -> None:
    assert records(ingress("web", [f"web.{Z}", f"WWW.{Z}."])) == [
        Record(f"web.{Z}", "A", ("192.168.1.10",), 300),
        Record(f"www.{Z}", "A", ("192.168.1.10",), 300),
    ]


@pytest.mark.parametrize("prefix", ["external-dns.kubernetes.io/", "external-dns.alpha.kubernetes.io/"])
def test_hostname_target_and_ttl_annotations_under_both_prefixes(prefix: str) -> None:
    obj = ingress("web", [f"web.{Z}"], **{prefix + "hostname": f"a.{Z}, b.{Z}", prefix + "ttl": "1m30s"})
    obj["metadata"]["annotations"][prefix + "target"] = "tunnel.example.net"
    assert records(obj) == [
        Record(f"web.{Z}", "CNAME", ("tunnel.example.net",), 90),
        Record(f"a.{Z}", "CNAME", ("tunnel.example.net",), 90),
        Record(f"b.{Z}", "CNAME", ("tunnel.example.net",), 90),
    ]


def test_ipv6_and_hostname_load_balancers() -> None:
    obj = ingress("web", [f"web.{Z}"])
    obj["status"]["loadBalancer"]["ingress"] = [{"ip": "fd00::10"}, {"ip": "192.168.1.10"}]
    assert {r.type for r in records(obj)} == {"A", "AAAA"}
    obj["status"]["loadBalancer"]["ingress"] = [{"hostname": "lb.example.net"}]
    assert records(obj) == [Record(f"web.{Z}", "CNAME", ("lb.example.net",), 300)]


def test_ingress_without_a_load_balancer_address_waits_silently() -> None:
    assert ingress_endpoints(ingress("web", [f"web.{Z}"], ip=None), 300) == ([], [])


@pytest.mark.parametrize(
    ("raw", "seconds"), [("60", 60), ("90s", 90), ("1h", 3600), ("1m30s", 90), ("1.5m", 90), ("2147483647", 2**31 - 1)]
)
def test_ttl_takes_seconds_or_a_go_duration(raw: str, seconds: int) -> None:
    assert parse_ttl(raw) == seconds


@pytest.mark.parametrize("raw", ["0", "-5", "5x", "", "500ms", "2147483648", "1 m"])
def test_bad_ttl_is_refused(raw: str) -> None:
    with pytest.raises(InvalidRecord, match="ttl"):
        parse_ttl(raw)


def test_bad_ttl_is_a_problem_of_its_ingress_only() -> None:
    bad = ingress("bad", [f"bad.{Z}"], **{"external-dns.kubernetes.io/ttl": "forever"})
    good = ingress("good", [f"good.{Z}"])
    found, problems = ingress_endpoints(bad, 300)
    assert found == []
    assert problems[0].resource == "ingress/apps/bad"
    assert "forever" in problems[0].reason
    desired = desired_state(ingress_endpoints(good, 300)[0], problems, [Z])
    assert list(desired.records) == [(f"good.{Z}", "A")]


def test_bad_hostname_does_not_block_the_others() -> None:
    found, problems = ingress_endpoints(ingress("web", [f"ok.{Z}", f"bad_-.{Z}", f"-x.{Z}", "nodots"]), 300)
    assert [e.record.name for e in found] == [f"ok.{Z}"]
    assert [p.name for p in problems] == [f"bad_-.{Z}", f"-x.{Z}", "nodots"]


def test_several_hostname_targets_cannot_make_a_cname() -> None:
    obj = ingress("web", [f"web.{Z}"], **{"external-dns.kubernetes.io/target": "a.example.net,b.example.net"})
    found, problems = ingress_endpoints(obj, 300)
    assert found == []
    assert "exactly one hostname" in problems[0].reason


def test_load_balancer_service_needs_the_hostname_annotation() -> None:
    svc = {
        "metadata": {"name": "mqtt", "namespace": "iot", "annotations": {}},
        "spec": {"type": "LoadBalancer"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}]}},
    }
    assert service_endpoints(svc, 300) == ([], [])
    svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"] = f"mqtt.{Z}"
    found, _ = service_endpoints(svc, 300)
    assert [(e.record.name, e.resource) for e in found] == [(f"mqtt.{Z}", "service/iot/mqtt")]
    svc["spec"]["type"] = "ClusterIP"
    assert service_endpoints(svc, 300) == ([], [])


def test_static_records_infer_their_type() -> None:
    found, _ = static_endpoints(StaticRecord(f"nas.{Z}", ("192.168.1.5",)), 300)
    assert found == [Endpoint(Record(f"nas.{Z}", "A", ("192.168.1.5",), 300), f"static/nas.{Z}")]
    found, _ = static_endpoints(StaticRecord(f"_info.{Z}", ("v=1",), 60, "TXT"), 300)
    assert found[0].record == Record(f"_info.{Z}", "TXT", ("v=1",), 60)
    _, problems = static_endpoints(StaticRecord(f"r.{Z}", ("fd00::1",), type="A"), 300)
    assert "do not make one A record" in problems[0].reason


def test_registry_uses_external_dns_names_and_values() -> None:
    assert registry_name(f"app.{Z}", "A") == f"a-app.{Z}"
    assert registry_name(f"www.{Z}", "CNAME") == f"cname-www.{Z}"
    assert registry_name(f"*.{Z}", "AAAA") == f"aaaa-*.{Z}"
    assert registry_value("homelab", "ingress/apps/app") == (
        "heritage=external-dns,external-dns/owner=homelab,external-dns/resource=ingress/apps/app"
    )
    assert parse_registry_value('"heritage=external-dns,external-dns/owner=x,external-dns/resource=r"') == {
        "owner": "x",
        "resource": "r",
    }
    assert parse_registry_value("v=spf1 -all") is None
    assert registry_key(f"cname-www.{Z}") == (f"www.{Z}", "CNAME")
    assert registry_key(f"mx-www.{Z}") is None


def test_domain_filter_and_apex_names() -> None:
    eps = [
        Endpoint(Record("web.other.org", "A", ("10.0.0.1",), 60), "ingress/a/web"),
        Endpoint(Record(Z, "A", ("10.0.0.1",), 60), "ingress/a/apex"),
    ]
    desired = desired_state(eps, [], [Z])
    assert desired.records == {}
    assert desired.filtered == 1
    assert "ownership record" in desired.problems[0].reason


def test_conflicting_resources_first_wins_and_the_other_is_reported() -> None:
    a = Endpoint(Record(f"x.{Z}", "A", ("10.0.0.1",), 60), "ingress/a/one")
    same = Endpoint(Record(f"x.{Z}", "A", ("10.0.0.1",), 60), "ingress/a/two")
    other = Endpoint(Record(f"x.{Z}", "A", ("10.0.0.2",), 60), "ingress/b/three")
    cname = Endpoint(Record(f"x.{Z}", "CNAME", ("y.example.net",), 60), "ingress/c/four")
    desired = desired_state([other, cname, same, a], [], [Z])
    assert desired.records == {(f"x.{Z}", "A"): a}
    assert [p.resource for p in desired.problems] == ["ingress/b/three", "ingress/c/four"]


def txt(name: str, owner: str, resource: str = "ingress/apps/x") -> Record:
    return Record(name, "TXT", (registry_value(owner, resource),), 60)


def want(name: str, *targets: str, rtype: str = "A", resource: str = "ingress/apps/x") -> dict[Any, Endpoint]:
    return {(name, rtype): Endpoint(Record(name, rtype, targets, 60), resource)}


def test_plan_creates_the_record_and_its_ownership_record() -> None:
    plan = make_plan(want(f"x.{Z}", "10.0.0.1"), [], "homelab", "sync")
    assert plan.create == [Record(f"x.{Z}", "A", ("10.0.0.1",), 60), txt(f"a-x.{Z}", "homelab")]
    assert plan.states() == {"create": 1}


def test_plan_never_touches_unowned_or_foreign_records() -> None:
    current = [
        Record(f"x.{Z}", "A", ("10.9.9.9",), 60),
        Record(f"y.{Z}", "A", ("10.9.9.8",), 60),
        txt(f"a-y.{Z}", "someone-else"),
        Record(f"z.{Z}", "A", ("10.9.9.7",), 60),
        txt(f"a-z.{Z}", "someone-else"),
    ]
    desired = {**want(f"x.{Z}", "10.0.0.1"), **want(f"y.{Z}", "10.0.0.1")}
    plan = make_plan(desired, current, "homelab", "sync")
    assert plan.empty
    assert plan.owner_mismatches == 2
    assert plan.states() == {"blocked": 2, "foreign": 1}


def test_plan_updates_and_deletes_only_what_it_owns() -> None:
    current = [
        Record(f"x.{Z}", "A", ("10.0.0.1",), 60),
        txt(f"a-x.{Z}", "homelab"),
        Record(f"old.{Z}", "A", ("10.0.0.5",), 60),
        txt(f"a-old.{Z}", "homelab", "ingress/apps/old"),
    ]
    plan = make_plan(want(f"x.{Z}", "10.0.0.2"), current, "homelab", "sync")
    assert plan.update == [(current[0], Record(f"x.{Z}", "A", ("10.0.0.2",), 60))]
    assert plan.delete == current[2:]
    assert make_plan(want(f"x.{Z}", "10.0.0.2"), current, "homelab", "upsert-only").delete == []
    create_only = make_plan(want(f"x.{Z}", "10.0.0.2"), current, "homelab", "create-only")
    assert create_only.empty
    assert create_only.states() == {"drift": 1, "retained": 1}


def test_plan_refuses_a_cname_beside_records_it_does_not_own() -> None:
    current = [Record(f"x.{Z}", "TXT", ("v=spf1 -all",), 60)]
    plan = make_plan(want(f"x.{Z}", "y.example.net", rtype="CNAME"), current, "homelab", "sync")
    assert plan.empty
    assert "records we do not own" in plan.views[0].reason


def test_plan_refuses_when_the_ownership_name_is_taken() -> None:
    current = [Record(f"a-x.{Z}", "TXT", ("something else",), 60)]
    plan = make_plan(want(f"x.{Z}", "10.0.0.1"), current, "homelab", "sync")
    assert plan.empty
    assert plan.views[0].state == "blocked"


def test_plan_takes_over_a_record_when_its_source_changes() -> None:
    current = [Record(f"x.{Z}", "A", ("10.0.0.1",), 60), txt(f"a-x.{Z}", "homelab", "ingress/apps/old")]
    plan = make_plan(want(f"x.{Z}", "10.0.0.1", resource="ingress/apps/new"), current, "homelab", "sync")
    assert plan.update == [(current[1], txt(f"a-x.{Z}", "homelab", "ingress/apps/new"))]


def test_applying_a_plan_gives_the_desired_state() -> None:
    current = [
        Record(f"x.{Z}", "A", ("10.0.0.1",), 60),
        txt(f"a-x.{Z}", "homelab"),
        Record(f"old.{Z}", "A", ("10.0.0.5",), 60),
        txt(f"a-old.{Z}", "homelab", "ingress/apps/old"),
        Record(f"foreign.{Z}", "A", ("10.9.9.9",), 60),
    ]
    desired = {**want(f"x.{Z}", "10.0.0.2"), **want(f"new.{Z}", "10.0.0.3")}
    plan = make_plan(desired, current, "homelab", "sync")
    after = applied(current, plan)
    assert make_plan(desired, after, "homelab", "sync").states() == {"synced": 2, "foreign": 1}


def test_txt_prefix_as_external_dns_writes_it() -> None:
    assert registry_name(f"app.{Z}", "A", "k8s.") == f"k8s.a-app.{Z}"
    assert registry_name(f"app.{Z}", "CNAME", "ext-") == f"ext-cname-app.{Z}"
    assert registry_key(f"k8s.a-app.{Z}", "k8s.") == (f"app.{Z}", "A")
    assert registry_key(f"a-app.{Z}", "k8s.") is None
    current = [Record(f"app.{Z}", "A", ("10.0.0.1",), 60), txt(f"k8s.a-app.{Z}", "homelab")]
    plan = make_plan(want(f"app.{Z}", "10.0.0.2"), current, "homelab", "sync", prefix="k8s.")
    assert plan.update == [(current[0], Record(f"app.{Z}", "A", ("10.0.0.2",), 60))]
    assert make_plan(want(f"app.{Z}", "10.0.0.2"), current, "homelab", "sync").views[0].state == "blocked"
