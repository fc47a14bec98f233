"""The embedded authoritative DNS server: the default provider, so a homelab needs no other DNS server.

Answers come from memory and are encoded once per zone change, not per query: every (name, type) the zones can
be asked about maps to a finished response with ID 0, and answering a query is a dict lookup plus splicing in
the query's ID, RD bit and question (which keeps the asker's letter case, as 0x20-randomising resolvers check).
A plain dnslib ``DNSServer`` decodes and re-encodes every message and manages about 3 % of dnsmasq's rate.

Only wildcard matches take the slow path (a response built with dnslib for the query's own name).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, QTYPE, RR, SOA, TXT, A, DNSHeader, DNSQuestion, DNSRecord
from dnslib.dns import DNSBuffer
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from homelab_dns.core import Plan, Record

log = logging.getLogger(__name__)

OPT_RR = b"\x00\x00\x29" + struct.pack(">H", 1232) + b"\x00\x00\x00\x00\x00\x00"
MAX_UDP = 1232
#: Counters kept per worker thread (no lock on the hot path) and summed when read.
STATS = ("answer", "nodata", "nxdomain", "refused", "notimp", "malformed", "truncated")
_ANSWER, _NODATA, _NXDOMAIN, _REFUSED, _NOTIMP, _MALFORMED, _TRUNCATED = range(len(STATS))
_QTYPES = ("A", "AAAA", "CNAME", "TXT", "SOA", "NS", "ANY")
_RDATA = {"A": A, "AAAA": AAAA, "CNAME": lambda t: CNAME(t + "."), "NS": lambda t: NS(t + ".")}


def wire_name(name: str) -> bytes:
    """``app.example.com`` as DNS wire labels, lowercase."""
    out = bytearray()
    for label in name.lower().rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        out.append(len(raw))
        out += raw
    if name.strip("."):
        out.append(0)
    return bytes(out)


def _rdata(rtype: str, target: str) -> object:
    if rtype == "TXT":
        chunks = [target[i : i + 255] for i in range(0, len(target), 255)] or [""]
        return TXT(chunks)
    return _RDATA[rtype](target)


class _NoCompression(DNSBuffer):  # type: ignore[misc]
    """A buffer that writes names in full, for record bytes placed after a question of any length."""

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)


@dataclass(frozen=True)
class ZoneConfig:
    """The zones served and their fixed apex records."""

    zones: tuple[str, ...]
    nameserver: str
    nameserver_addresses: tuple[str, ...] = ()
    hostmaster: str = ""
    negative_ttl: int = 60
    apex_ttl: int = 3600


@dataclass
class Answers:
    """One zone version's finished responses (ID 0, no OPT) and what the slow path needs."""

    exact: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)  # qname wire + qtype -> response, stat
    #: qname wire -> the response for any other type: a CNAME's own answer, or (a zone's wire) for NODATA.
    names: dict[bytes, tuple[bytes, int] | bytes] = field(default_factory=dict)
    zones: dict[bytes, bytes] = field(default_factory=dict)  # zone wire -> SOA authority record (uncompressed)
    wildcards: dict[str, list[Record]] = field(default_factory=dict)  # "*.parent" -> its records
    names_text: frozenset[str] = frozenset()


class Zone:
    """The records of the embedded zones; ``apply`` swaps in freshly encoded answers atomically.

    Encoding is incremental: a change re-encodes only the names it touched, the CNAMEs pointing at them and
    the apex (whose SOA carries the new serial). Negative answers are not stored per name: they are the header,
    the asker's question and the zone's SOA record, put together per query.
    """

    name = "embedded"
    shared = False

    def __init__(self, config: ZoneConfig) -> None:
        self.config = config
        self.zones = config.zones
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], Record] = {}
        #: name -> (its typed answers, its CNAME's answer for any other type)
        self._encoded: dict[str, tuple[dict[bytes, tuple[bytes, int]], tuple[bytes, int] | None]] = {}
        self.serial = int(time.time()) & 0xFFFFFFFF
        for address in config.nameserver_addresses:
            rtype = "AAAA" if ":" in address else "A"
            old = self._records.get((config.nameserver, rtype))
            targets = tuple(sorted({*(old.targets if old else ()), address}))
            self._records[(config.nameserver, rtype)] = Record(config.nameserver, rtype, targets, config.apex_ttl)
        self.answers = self._build(None)

    # -- Provider -------------------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._lock:
            return sorted([*self._records.values(), *self._apex_records()])

    def apply(self, plan: Plan) -> None:
        with self._lock:
            changed: set[str] = set()
            for rec in plan.delete:
                self._records.pop(rec.key, None)
                changed.add(rec.name)
            for old, new in plan.update:
                self._records.pop(old.key, None)
                self._records[new.key] = new
                changed |= {old.name, new.name}
            for rec in plan.create:
                self._records[rec.key] = rec
                changed.add(rec.name)
            self.serial = (self.serial + 1) & 0xFFFFFFFF
            self.answers = self._build(changed)

    # -- encoding -------------------------------------------------------------------------------------------------

    def _apex_records(self) -> list[Record]:
        return [Record(zone, "NS", (self.config.nameserver,), self.config.apex_ttl) for zone in self.config.zones]

    def _soa(self, zone: str, ttl: int) -> RR:
        hostmaster = self.config.hostmaster or f"hostmaster.{zone}"
        times = (self.serial, 3600, 600, 86400, self.config.negative_ttl)
        rdata = SOA(self.config.nameserver + ".", hostmaster + ".", times)
        return RR(zone + ".", QTYPE.SOA, ttl=ttl, rdata=rdata)

    def _build(self, changed: set[str] | None) -> Answers:
        """Encode the answers ``changed`` names can give (all when None). Runs under the lock, once per change."""
        started = time.perf_counter()
        answers = Answers()
        rrsets: dict[str, dict[str, Record]] = {}
        for rec in [*self._records.values(), *self._apex_records()]:
            if self._zone_of(rec.name) is not None:
                rrsets.setdefault(rec.name, {})[rec.type] = rec
        soas = {zone: self._soa(zone, self.config.apex_ttl) for zone in self.config.zones}
        for zone in self.config.zones:  # RFC 2308: a negative answer's SOA carries the negative TTL
            buffer = _NoCompression()
            self._soa(zone, self.config.negative_ttl).pack(buffer)
            answers.zones[wire_name(zone)] = bytes(buffer.data)
        names: dict[str, str] = {}
        for name in rrsets:
            enclosing = self._zone_of(name)
            if enclosing is not None:
                names[name] = enclosing
        names.update({apex: apex for apex in self.config.zones})
        for name, zone in list(names.items()):  # empty non-terminals exist (NODATA), they are not NXDOMAIN
            parts = name.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[i:])
                if not (parent == zone or parent.endswith("." + zone)):
                    break
                names[parent] = zone
        dirty = set(names) if changed is None else {*changed, *self.config.zones}
        grown = True
        while grown:  # a CNAME's answer includes its in-zone target's records
            grown = False
            for name, here in rrsets.items():
                cname = here.get("CNAME")
                if cname is not None and cname.targets[0] in dirty and name not in dirty:
                    dirty.add(name)
                    grown = True
        for name in [n for n in self._encoded if n in dirty or n not in names]:
            del self._encoded[name]
        encoded = 0
        for name, zone in names.items():
            if name.startswith("*."):
                answers.wildcards[name] = list(rrsets.get(name, {}).values())
                continue
            here = rrsets.get(name, {})
            wire = wire_name(name)
            if name in dirty or name not in self._encoded:
                entries: dict[bytes, tuple[bytes, int]] = {}
                for qtype in _QTYPES:
                    rrs = self.answer_rrs(name, qtype, here, rrsets, soas[zone])
                    if rrs:
                        entries[wire + struct.pack(">H", getattr(QTYPE, qtype))] = (_pack(name, qtype, rrs), _ANSWER)
                fallback = None
                if "CNAME" in here:
                    fallback = (_pack(name, "CNAME", _rrs(here["CNAME"], name)), _ANSWER)
                self._encoded[name] = (entries, fallback)
                encoded += 1
            entries, fallback = self._encoded[name]
            answers.exact.update(entries)
            answers.names[wire] = fallback or wire_name(zone)
        answers.names_text = frozenset(names)
        log.debug(
            "zone encoded",
            extra={
                "serial": self.serial,
                "names": len(names),
                "encoded": encoded,
                "ms": round((time.perf_counter() - started) * 1e3, 1),
            },
        )
        return answers

    def answer_rrs(
        self, name: str, qtype: str, here: dict[str, Record], rrsets: dict[str, dict[str, Record]], soa: RR | None
    ) -> list[RR]:
        out: list[RR] = []
        zone_soa = self._zone_of(name) == name
        if qtype == "ANY":
            for rec in here.values():
                out += _rrs(rec, name)
            if zone_soa and soa is not None:
                out.append(soa)
            return out
        if qtype == "SOA" and zone_soa and soa is not None:
            return [soa]
        if qtype in here:
            return _rrs(here[qtype], name)
        if "CNAME" in here:  # follow CNAMEs within our zones, as an authoritative server may
            cname = here["CNAME"]
            out += _rrs(cname, name)
            seen = {name}
            target = cname.targets[0]
            while target in rrsets and target not in seen and len(seen) < 8:
                seen.add(target)
                there = rrsets[target]
                if qtype in there:
                    out += _rrs(there[qtype], target)
                    break
                if "CNAME" not in there:
                    break
                out += _rrs(there["CNAME"], target)
                target = there["CNAME"].targets[0]
        return out

    def _zone_of(self, name: str) -> str | None:
        best = None
        for zone in self.config.zones:
            if (name == zone or name.endswith("." + zone)) and (best is None or len(zone) > len(best)):
                best = zone
        return best

    # -- the slow path: wildcards and names that do not exist ------------------------------------------------------

    def slow_answer(self, answers: Answers, qname: bytes, qtype: int) -> tuple[bytes | None, int]:
        """A response body after the header+question, with its rcode and stat, for misses of the fast path.

        Returns (None, _REFUSED) for names outside our zones.
        """
        labels = _labels(qname)
        if labels is None:
            return None, _MALFORMED
        name = ".".join(labels)
        zone_wire = self._zone_wire(answers, labels)
        if zone_wire is None:
            return None, _REFUSED
        for i in range(1, len(labels)):  # the closest encloser decides whether a wildcard applies
            encloser = ".".join(labels[i:])
            if encloser in answers.names_text:
                records = answers.wildcards.get("*." + encloser)
                if records is None:
                    break
                here = {r.type: Record(name, r.type, r.targets, r.ttl) for r in records}
                rrs = self.answer_rrs(name, str(QTYPE.get(qtype, "NULL")), here, {}, None)
                if not rrs:
                    return answers.zones[zone_wire], _NODATA
                msg = DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=0), q=DNSQuestion(name + ".", qtype))
                for rr in rrs:
                    msg.add_answer(rr)
                return msg.pack(), _ANSWER
        return answers.zones[zone_wire], _NXDOMAIN

    @staticmethod
    def _zone_wire(answers: Answers, labels: Sequence[str]) -> bytes | None:
        """The wire name of the zone enclosing ``labels`` (the longest match), or None."""
        for i in range(len(labels)):
            wire = wire_name(".".join(labels[i:]))
            if wire in answers.zones:
                return wire
        return None


def _pack(name: str, qtype: str, rrs: list[RR]) -> bytes:
    msg = DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=0), q=DNSQuestion(name + ".", getattr(QTYPE, qtype)))
    for rr in rrs:
        msg.add_answer(rr)
    packed: bytes = msg.pack()
    return packed


def _rrs(rec: Record, owner: str) -> list[RR]:
    rtype = getattr(QTYPE, rec.type)
    return [RR(owner + ".", rtype, ttl=rec.ttl, rdata=_rdata(rec.type, t)) for t in rec.targets]


def _labels(qname: bytes) -> list[str] | None:
    labels = []
    i = 0
    while i < len(qname) and qname[i]:
        length = qname[i]
        try:
            labels.append(qname[i + 1 : i + 1 + length].decode("ascii").lower())
        except UnicodeDecodeError:
            return None
        i += length + 1
    return labels


def _header(query: bytes, rcode: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0, aa: bool = True) -> bytes:
    flags = 0x80 | (query[2] & 0x79) | (0x04 if aa else 0)  # QR, opcode and RD from the query, AA
    return query[:2] + bytes((flags, rcode)) + struct.pack(">HHHH", qd, an, ns, ar)


_SERVERS: weakref.WeakSet[DnsServer] = weakref.WeakSet()


class _QueryCollector(Collector):
    """Reads the servers' per-thread counters at scrape time, so the hot path never touches a lock."""

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        queries = CounterMetricFamily(
            "homelab_dns_queries", "DNS queries by outcome (malformed ones are dropped)", labels=["result"]
        )
        serial = GaugeMetricFamily("homelab_dns_zone_serial", "The embedded zones' SOA serial")
        totals = dict.fromkeys(STATS, 0)
        serials = []
        for server in list(_SERVERS):
            for name, value in server.stats().items():
                totals[name] += value
            serials.append(server.zone.serial)
        for name, value in totals.items():
            queries.add_metric([name], value)
        yield queries
        if serials:
            serial.add_metric([], max(serials))
            yield serial


REGISTRY.register(_QueryCollector())


class DnsServer:
    """UDP (one SO_REUSEPORT socket per worker thread) and TCP listeners answering from a :class:`Zone`."""

    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 5353, udp_workers: int = 2) -> None:
        self.zone = zone
        self.host = host
        self.port = port
        self.udp_workers = max(1, udp_workers)
        self._stats: list[list[int]] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._tcp_connections = threading.BoundedSemaphore(64)
        _SERVERS.add(self)

    # -- life cycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        tcp = self._socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((self.host, self.port))
        self.port = tcp.getsockname()[1]  # port 0 in tests: the kernel picks, UDP follows
        tcp.listen(64)
        self._sockets.append(tcp)
        for _ in range(self.udp_workers):
            udp = self._socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((self.host, self.port))
            self._sockets.append(udp)
            stats = [0] * len(STATS)
            self._stats.append(stats)
            self._spawn(self._udp_loop, udp, stats)
        self._spawn(self._tcp_accept, tcp)
        log.info("dns server listening", extra={"host": self.host, "port": self.port, "udp_workers": self.udp_workers})

    @staticmethod
    def _socket(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:  # "::" serves IPv4 too (dual-stack pods)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        return sock

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name="dns-server", daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def stats(self) -> dict[str, int]:
        totals = dict.fromkeys(STATS, 0)
        for stats in list(self._stats):
            for index, name in enumerate(STATS):
                totals[name] += stats[index]
        return totals

    # -- the hot path ---------------------------------------------------------------------------------------------

    def answer(self, data: bytes, udp: bool, stats: list[int]) -> bytes | None:
        """The response to one query, or None (counted as malformed) when it is not a query we can parse."""
        n = len(data)
        if n < 17 or data[2] & 0x80 or data[4] or data[5] != 1:
            stats[_MALFORMED] += 1
            return None
        i = 12
        while True:
            if i >= n:
                stats[_MALFORMED] += 1
                return None
            length = data[i]
            if not length:
                break
            if length > 63:
                stats[_MALFORMED] += 1
                return None
            i += length + 1
        end = i + 5
        if end > n:
            stats[_MALFORMED] += 1
            return None
        question = data[12:end]
        edns = 0
        if (data[10] or data[11]) and data[end : end + 3] == b"\x00\x00\x29" and n >= end + 11:
            edns = max(512, (data[end + 3] << 8) | data[end + 4])
        if (data[2] >> 3) & 0x0F:
            stats[_NOTIMP] += 1
            out = _header(data, 4, 1, ar=1 if edns else 0) + question
            return out + OPT_RR if edns else out
        answers = self.zone.answers
        qname = data[12 : i + 1].lower()
        found: tuple[bytes, int] | bytes | None = None
        if data[i + 3 : i + 5] == b"\x00\x01":
            found = answers.exact.get(qname + data[i + 1 : i + 3]) or answers.names.get(qname)
        if found is not None:
            if isinstance(found, bytes):  # the name exists, the type does not: NODATA with the zone's SOA
                stat = _NODATA
                out = _header(data, 0, 1, ns=1) + question + answers.zones[found]
            else:
                resp, stat = found
                out = data[:2] + bytes(((resp[2] & 0xFE) | (data[2] & 0x01),)) + resp[3:12] + question + resp[end:]
        elif data[i + 3 : i + 5] != b"\x00\x01":
            stat = _REFUSED
            out = _header(data, 5, 1) + question
        else:
            body, stat = self.zone.slow_answer(answers, qname, (data[i + 1] << 8) | data[i + 2])
            if stat == _MALFORMED:
                stats[stat] += 1
                return None
            if body is None:
                out = _header(data, 5, 1, aa=False) + question
            elif stat == _ANSWER:
                out = data[:2] + bytes(((body[2] & 0xFE) | (data[2] & 0x01),)) + body[3:12] + question + body[end:]
            else:
                out = _header(data, 3 if stat == _NXDOMAIN else 0, 1, ns=1) + question + body
        stats[stat] += 1
        if edns:
            out = out[:10] + b"\x00\x01" + out[12:] + OPT_RR
        if udp and len(out) > (min(edns, MAX_UDP) if edns else 512):
            stats[_TRUNCATED] += 1
            out = data[:2] + bytes((out[2] | 0x02, out[3])) + struct.pack(">HHHH", 1, 0, 0, 1 if edns else 0)
            out += question + (OPT_RR if edns else b"")
        return out

    def _udp_loop(self, sock: socket.socket, stats: list[int]) -> None:
        recv = sock.recvfrom
        send = sock.sendto
        answer = self.answer
        stopping = self._stopping.is_set
        while True:
            try:
                data, addr = recv(4096)
            except OSError:
                if stopping():
                    return
                continue
            if not data and stopping():
                return
            try:
                out = answer(data, True, stats)
            except Exception:  # a bug must cost one query, never the server
                log.exception("query failed")
                stats[_MALFORMED] += 1
                continue
            if out is not None:
                try:  # noqa: SIM105 - the hot path: try/except costs less than a context manager
                    send(out, addr)
                except OSError:
                    pass

    def _tcp_accept(self, listener: socket.socket) -> None:
        stats = [0] * len(STATS)
        self._stats.append(stats)
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # out of file descriptors, or stopping: never spin
                self._stopping.wait(0.1)
                continue
            if not self._tcp_connections.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._tcp_serve, args=(conn, stats), daemon=True).start()

    def _tcp_serve(self, conn: socket.socket, stats: list[int]) -> None:
        try:
            conn.settimeout(10)
            while not self._stopping.is_set():
                head = _read_exact(conn, 2)
                if head is None:
                    return
                data = _read_exact(conn, struct.unpack(">H", head)[0])
                if data is None:
                    stats[_MALFORMED] += 1
                    return
                out = self.answer(data, False, stats)
                if out is None:
                    return
                conn.sendall(struct.pack(">H", len(out)) + out)
        except OSError:
            return
        finally:
            conn.close()
            self._tcp_connections.release()


def _read_exact(conn: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def zone_config(zones: Iterable[str], nameserver: str, addresses: Iterable[str] = ()) -> ZoneConfig:
    return ZoneConfig(tuple(z.lower().rstrip(".") for z in zones), nameserver.lower().rstrip("."), tuple(addresses))
