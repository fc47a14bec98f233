"""RFC 2136 dynamic updates signed with TSIG, to a server the user already runs (BIND, Knot, PowerDNS, Technitium).

The zone is read by AXFR every sync, so records are diffed against what the server really holds and deletions
happen (the top complaint about external-dns's RFC 2136 provider without zone transfers: records never deleted).
Creations carry an "RRset does not exist" prerequisite: if someone wrote the name since we read the zone, the
server refuses the whole update instead of us overwriting their record, and the next sync sees it as not ours.
"""

from __future__ import annotations

import base64
import binascii

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from homelab_dns.core import Plan, Record, quote_txt
from homelab_dns.providers import ProviderError

#: Operations per UPDATE message: large plans go in several messages, deletions first.
BATCH = 200


class Rfc2136:
    name = "rfc2136"
    shared = True

    def __init__(
        self,
        server: str,
        zone: str,
        key_name: str,
        secret: str,
        *,
        port: int = 53,
        algorithm: str = "hmac-sha256",
        timeout: float = 5.0,
    ) -> None:
        self.server = server
        self.port = port
        self.zone = zone.lower().rstrip(".")
        self.zones: tuple[str, ...] = (self.zone,)
        self.origin = dns.name.from_text(self.zone)
        self.timeout = timeout
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the TSIG secret is not valid base64") from None
        self.key = dns.tsig.Key(key_name, secret, algorithm)

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port} (zone {self.zone})"

    # -- reading --------------------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        zone = dns.zone.Zone(self.origin)
        try:
            query, _ = dns.xfr.make_query(zone, serial=None, keyring=self.key)
            dns.query.inbound_xfr(
                self.server, zone, query, port=self.port, timeout=self.timeout, lifetime=self.timeout * 6
            )
        except Exception as exc:
            raise self._error("zone transfer", exc) from None
        out: list[Record] = []
        for name, node in zone.nodes.items():
            fqdn = name.derelativize(self.origin).to_text(omit_final_dot=True).lower()
            for rdataset in node.rdatasets:
                rtype = dns.rdatatype.to_text(rdataset.rdtype)
                targets = tuple(sorted(_target(rtype, rd, self.origin) for rd in rdataset))
                out.append(Record(fqdn, rtype, targets, rdataset.ttl))
        return sorted(out)

    # -- writing --------------------------------------------------------------------------------------------------

    def apply(self, plan: Plan) -> None:
        ops: list[tuple[str, Record]] = [("delete", r) for r in plan.delete]
        ops += [("replace", new) for _, new in plan.update]
        ops += [("create", r) for r in plan.create]
        for start in range(0, len(ops), BATCH):
            update = dns.update.UpdateMessage(self.origin, keyring=self.key)
            for op, rec in ops[start : start + BATCH]:
                name = dns.name.from_text(rec.name).relativize(self.origin)
                if op == "delete":
                    update.delete(name, rec.type)
                    continue
                rdatas = [dns.rdata.from_text(dns.rdataclass.IN, rec.type, _text(rec.type, t)) for t in rec.targets]
                if op == "create":
                    update.absent(name, rec.type)
                    update.add(name, rec.ttl, *rdatas)
                else:
                    update.replace(name, rec.ttl, *rdatas)
            try:
                response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
            except Exception as exc:
                raise self._error("update", exc) from None
            rcode = response.rcode()
            if rcode != dns.rcode.NOERROR:
                hint = {
                    dns.rcode.YXRRSET: "a record we were about to create appeared meanwhile; the next sync re-reads",
                    dns.rcode.REFUSED: "the server does not allow updates with this key for this zone",
                    dns.rcode.NOTAUTH: "the server is not authoritative for the zone, or the TSIG key is wrong",
                    dns.rcode.NOTZONE: "a name is outside the zone",
                }.get(rcode, "see the server's log")
                raise ProviderError(f"{self.where}: update failed with {dns.rcode.to_text(rcode)}: {hint}")

    def _error(self, what: str, exc: Exception) -> ProviderError:
        key = self.key.name.to_text(omit_final_dot=True)
        if isinstance(exc, dns.tsig.PeerError | dns.tsig.BadSignature):
            reason = f"TSIG key {key!r} rejected ({type(exc).__name__}): check the key name, secret and algorithm"
        elif isinstance(exc, dns.exception.Timeout):
            reason = f"timed out after {self.timeout:g}s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused: is the server running and listening on this port?"
        elif isinstance(exc, dns.xfr.TransferError):
            reason = f"refused with {dns.rcode.to_text(exc.rcode)}: allow zone transfers with key {key!r}"
        elif isinstance(exc, OSError):
            reason = f"network error: {exc.strerror or exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return ProviderError(f"{self.where}: {what} failed: {reason}")


def _text(rtype: str, target: str) -> str:
    if rtype == "TXT":
        return quote_txt(target)
    if rtype in ("CNAME", "NS"):
        return target + "."
    return target


def _target(rtype: str, rdata: dns.rdata.Rdata, origin: dns.name.Name) -> str:
    if rtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    if rtype in ("CNAME", "NS"):
        target: dns.name.Name = rdata.target  # type: ignore[attr-defined]
        return target.derelativize(origin).to_text(omit_final_dot=True).lower()
    return rdata.to_text(origin=origin, relativize=False)
