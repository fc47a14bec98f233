"""The embedded authoritative server, asked with dig (bind9-dnsutils) over UDP and TCP on loopback."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message
import dns.query
import dns.rcode
import dns.update
import pytest
from dns_helpers import free_port
from hypothesis import given, settings
from hypothesis import strategies as st

from homelab_dns.core import Plan, Record
from homelab_dns.providers.embedded import STATS, DnsServer, Zone, zone_config

Z = "home.example.com"
BIG = tuple(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(120))  # ~2 KB of answers: more than one UDP datagram

RECORDS = [
    Record(f"app.{Z}", "A", ("192.168.1.10", "192.168.1.11"), 300),
    Record(f"app.{Z}", "AAAA", ("fd00::10",), 300),
    Record(f"www.{Z}", "CNAME", (f"app.{Z}",), 120),
    Record(f"out.{Z}", "CNAME", ("tunnel.example.net",), 120),
    Record(f"a-app.{Z}", "TXT", ("heritage=external-dns,external-dns/owner=homelab",), 300),
    Record(f"deep.sub.{Z}", "A", ("192.168.1.12",), 300),
    Record(f"*.wild.{Z}", "A", ("192.168.1.13",), 60),
    Record(f"big.{Z}", "A", BIG, 60),
]


def _fuzz_server() -> DnsServer:
    zone = Zone(zone_config([Z], f"ns.{Z}", ["127.0.0.1"]))
    zone.apply(Plan(create=list(RECORDS)))
    return DnsServer(zone)  # never started: the tests call its answer() directly


FUZZ_SERVER = _fuzz_server()


@dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[tuple[str, int, str, str]]
    authority: list[str]
    text: str


@pytest.fixture
def server() -> Iterator[DnsServer]:
    if shutil.which("dig") is None:
        pytest.skip("dig (Debian bind9-dnsutils) is not installed")
    zone = Zone(zone_config([Z], f"ns.{Z}", ["127.0.0.1"]))
    zone.apply(Plan(create=list(RECORDS)))
    srv = DnsServer(zone, "127.0.0.1", free_port(), udp_workers=2)
    srv.start()
    yield srv
    srv.stop()


def dig(server: DnsServer, name: str, rtype: str = "A", *options: str) -> Dig:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), name, rtype, "+norec", "+time=3", "+tries=2", *options],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([\w ]+);", out)
    answer, authority, section = [], [], ""
    for line in out.splitlines():
        if line.startswith(";; ") and "SECTION" in line:
            section = line
            continue
        if not line.strip() or line.startswith(";"):
            continue
        fields = line.split(None, 4)
        if "ANSWER" in section:
            answer.append((fields[0], int(fields[1]), fields[3], fields[4]))
        elif "AUTHORITY" in section:
            authority.append(fields[3])
    return Dig(status[1] if status else "", set(flags[1].split()) if flags else set(), answer, authority, out)


def test_a_aaaa_txt_answers_are_authoritative(server: DnsServer) -> None:
    a = dig(server, f"app.{Z}")
    assert a.status == "NOERROR"
    assert "aa" in a.flags
    assert sorted(r[3] for r in a.answer) == ["192.168.1.10", "192.168.1.11"]
    assert a.answer[0][1] == 300
    assert [r[3] for r in dig(server, f"app.{Z}", "AAAA").answer] == ["fd00::10"]
    assert [r[3] for r in dig(server, f"a-app.{Z}", "TXT").answer] == [
        '"heritage=external-dns,external-dns/owner=homelab"'
    ]


def test_cname_is_followed_inside_the_zone(server: DnsServer) -> None:
    www = dig(server, f"www.{Z}")
    assert [(r[2], r[3]) for r in www.answer] == [
        ("CNAME", f"app.{Z}."),
        ("A", "192.168.1.10"),
        ("A", "192.168.1.11"),
    ]
    assert [(r[2], r[3]) for r in dig(server, f"out.{Z}", "AAAA").answer] == [("CNAME", "tunnel.example.net.")]
    assert [r[2] for r in dig(server, f"www.{Z}", "MX").answer] == ["CNAME"]


def test_soa_and_ns_at_the_apex(server: DnsServer) -> None:
    soa = dig(server, Z, "SOA")
    assert soa.answer[0][2] == "SOA"
    assert soa.answer[0][3].startswith(f"ns.{Z}. hostmaster.{Z}. ")
    assert [r[3] for r in dig(server, Z, "NS").answer] == [f"ns.{Z}."]
    assert [r[3] for r in dig(server, f"ns.{Z}").answer] == ["127.0.0.1"]


def test_nxdomain_and_nodata_are_told_apart(server: DnsServer) -> None:
    missing = dig(server, f"nope.{Z}")
    assert missing.status == "NXDOMAIN"
    assert missing.authority == ["SOA"]
    nodata = dig(server, f"app.{Z}", "MX")
    assert (nodata.status, nodata.answer, nodata.authority) == ("NOERROR", [], ["SOA"])
    empty_non_terminal = dig(server, f"sub.{Z}")
    assert (empty_non_terminal.status, empty_non_terminal.answer) == ("NOERROR", [])
    assert dig(server, f"x.deep.sub.{Z}").status == "NXDOMAIN"


def test_wildcards_answer_for_any_name_below(server: DnsServer) -> None:
    hit = dig(server, f"anything.wild.{Z}")
    assert [(r[0], r[3]) for r in hit.answer] == [(f"anything.wild.{Z}.", "192.168.1.13")]
    assert dig(server, f"anything.wild.{Z}", "TXT").status == "NOERROR"


def test_names_outside_the_zones_are_refused(server: DnsServer) -> None:
    assert dig(server, "example.org").status == "REFUSED"


def test_question_case_is_echoed(server: DnsServer) -> None:
    mixed = dig(server, "ApP.HoMe.ExAmple.cOm")
    assert mixed.answer[0][0] == "ApP.HoMe.ExAmple.cOm."
    assert ";ApP.HoMe.ExAmple.cOm." in mixed.text


def test_large_answer_sets_tc_over_udp_and_comes_whole_over_tcp(server: DnsServer) -> None:
    udp_only = dig(server, f"big.{Z}", "A", "+ignore")
    assert "tc" in udp_only.flags
    assert udp_only.answer == []
    fallback = dig(server, f"big.{Z}")
    assert "Truncated, retrying in TCP mode" in fallback.text
    assert len(fallback.answer) == len(BIG)
    plain = dig(server, f"big.{Z}", "A", "+noedns", "+ignore")  # 512 bytes without EDNS
    assert "tc" in plain.flags
    assert len(dig(server, f"big.{Z}", "A", "+tcp").answer) == len(BIG)
    assert server.stats()["truncated"] == 3  # +ignore, the fallback's first try, +noedns


def test_malformed_queries_are_dropped_and_counted(server: DnsServer) -> None:
    garbage = [
        b"",
        b"\x00" * 5,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40" + b"a" * 70,  # label longer than 63
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03abc",  # truncated question
        b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # two questions
        dns.message.make_response(dns.message.make_query(f"app.{Z}", "A")).to_wire(),  # a response, not a query
    ]
    before = server.stats()["malformed"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for packet in garbage:
            sock.sendto(packet, ("127.0.0.1", server.port))
        with pytest.raises(TimeoutError):
            sock.recvfrom(4096)
    assert dig(server, f"app.{Z}").status == "NOERROR"
    assert server.stats()["malformed"] - before == len(garbage)


def test_updates_get_notimp(server: DnsServer) -> None:
    update = dns.update.UpdateMessage(Z)
    update.add("x", 60, "A", "10.0.0.1")
    assert dns.query.udp(update, "127.0.0.1", port=server.port, timeout=3).rcode() == dns.rcode.NOTIMP


def test_serial_increases_and_answers_follow_each_change(server: DnsServer) -> None:
    zone = server.zone
    first = int(dig(server, Z, "SOA").answer[0][3].split()[2])
    zone.apply(Plan(create=[Record(f"new.{Z}", "A", ("10.0.0.9",), 60)]))
    second = int(dig(server, Z, "SOA").answer[0][3].split()[2])
    assert second == first + 1
    assert [r[3] for r in dig(server, f"new.{Z}").answer] == ["10.0.0.9"]
    zone.apply(Plan(delete=[Record(f"new.{Z}", "A", ("10.0.0.9",), 60)]))
    assert dig(server, f"new.{Z}").status == "NXDOMAIN"
    assert int(dig(server, Z, "SOA").answer[0][3].split()[2]) == second + 1


def test_a_cname_follows_changes_to_its_target(server: DnsServer) -> None:
    zone = server.zone
    old = Record(f"app.{Z}", "A", ("192.168.1.10", "192.168.1.11"), 300)
    zone.apply(Plan(update=[(old, Record(f"app.{Z}", "A", ("192.168.1.50",), 300))]))
    assert [r[3] for r in dig(server, f"www.{Z}").answer] == [f"app.{Z}.", "192.168.1.50"]
    zone.apply(Plan(delete=[Record(f"app.{Z}", "A", ("192.168.1.50",), 300)]))
    assert [r[3] for r in dig(server, f"www.{Z}").answer] == [f"app.{Z}."]
    assert dig(server, f"app.{Z}").status == "NOERROR"  # the AAAA record is still there: NODATA for A
    assert dig(server, f"app.{Z}").answer == []


def test_dual_stack_listener_answers_ipv4_and_ipv6() -> None:
    zone = Zone(zone_config([Z], f"ns.{Z}"))
    zone.apply(Plan(create=[RECORDS[0]]))
    srv = DnsServer(zone, "::", free_port(), udp_workers=1)
    try:
        srv.start()
    except OSError as exc:
        pytest.skip(f"no IPv6 on this machine: {exc}")
    try:
        query = dns.message.make_query(f"app.{Z}", "A")
        for address in ("127.0.0.1", "::1"):
            assert dns.query.udp(query, address, port=srv.port, timeout=3).answer
            assert dns.query.tcp(query, address, port=srv.port, timeout=3).answer
    finally:
        srv.stop()


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_any_datagram_gets_a_parseable_answer_or_none(data: bytes) -> None:
    stats = [0] * len(STATS)
    out = FUZZ_SERVER.answer(data, True, stats)
    if out is None:
        assert stats[STATS.index("malformed")] == 1
        return
    response = dns.message.from_wire(out, question_only=True)
    assert response.id == int.from_bytes(data[:2], "big")
    assert len(out) <= 1232


@given(
    name=st.lists(st.from_regex(r"[A-Za-z0-9*_-]{1,20}", fullmatch=True), min_size=0, max_size=3),
    suffix=st.sampled_from([Z, f"sub.{Z}", f"wild.{Z}", "example.org"]),
    rtype=st.sampled_from(["A", "AAAA", "CNAME", "TXT", "SOA", "NS", "MX", "ANY", "SRV"]),
    edns=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_every_query_gets_a_well_formed_answer(name: list[str], suffix: str, rtype: str, edns: bool) -> None:
    qname = ".".join([*name, suffix])
    query = dns.message.make_query(qname, rtype, use_edns=0 if edns else False)
    out = FUZZ_SERVER.answer(query.to_wire(), True, [0] * len(STATS))
    assert out is not None
    response = dns.message.from_wire(out)
    assert response.id == query.id
    assert response.question[0].name == query.question[0].name
    assert response.question[0].name.to_text() == query.question[0].name.to_text()  # case kept
    assert (response.edns >= 0) == edns
    expected = {dns.rcode.NOERROR, dns.rcode.NXDOMAIN} if suffix != "example.org" else {dns.rcode.REFUSED}
    assert response.rcode() in expected
