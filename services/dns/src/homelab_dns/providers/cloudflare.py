"""Cloudflare through its v4 API with a scoped API token: DNS records, and the routes of a Cloudflare Tunnel.

Records: the zone is found by name, listed page by page every sync (so deletions happen and drift is repaired),
and written one record at a time (Cloudflare stores one record per target). external-dns's TXT ownership
records are written like the other providers write them, so a zone moves between external-dns and us.
Ownership TXT records are created before the record they own and deleted after it: an interrupted apply leaves
at worst an ownership record without its record (the next sync creates the record), never a record we can no
longer claim.

Tunnel routes: the tunnel is remotely managed, its ingress rules PUT through the API; ``cloudflared tunnel run``
with the tunnel token follows them within seconds, with no file and no restart. Rules pointing at our Traefik
service are ours (one per public hostname); any other rule is the user's and kept, and the catch-all
``http_status:404`` stays last, as cloudflared requires.

At the first sync the token is verified and probed (homelab_common.cloudflare.check_token); a missing permission
is a ProviderError naming it, shown in /status and ``homelab_dns_cloudflare_missing_permission``, and retried
with backoff: fixing the token fixes the service, without a restart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import Gauge

from homelab_common.cloudflare import (
    CATCH_ALL,
    DNS_EDIT,
    DNS_READ,
    TUNNEL_EDIT,
    TUNNEL_READ,
    ZONE_READ,
    CloudflareApi,
    CloudflareError,
    check_token,
)
from homelab_dns.core import PROXIABLE, TUNNEL_DOMAIN, Plan, Record, quote_txt
from homelab_dns.providers import ProviderError

MISSING = Gauge(
    "homelab_dns_cloudflare_missing_permission",
    "1 for each permission the Cloudflare API token lacks (found at start or at a refused write)",
    ["permission"],
)
for _permission in (ZONE_READ, DNS_READ, DNS_EDIT, TUNNEL_READ, TUNNEL_EDIT):
    MISSING.labels(_permission)

_CHARACTER_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def txt_value(content: str) -> str:
    """A TXT record's content as Cloudflare returns it (quoted character strings, or bare) as one string."""
    text = content.strip()
    if not text.startswith('"'):
        return text
    parts = _CHARACTER_STRING.findall(text)
    return "".join(re.sub(r"\\(.)", r"\1", p) for p in parts)


class Cloudflare:
    """The Provider for one Cloudflare zone (and, given ``tunnel``, the routes of one tunnel)."""

    name = "cloudflare"
    shared = True

    def __init__(
        self,
        api: CloudflareApi,
        zone: str,
        *,
        per_page: int = 500,
        account_id: str = "",
        tunnel_id: str = "",
        service: str = "",
    ) -> None:
        self.api = api
        self.zone = zone.lower().rstrip(".")
        self.zones: tuple[str, ...] = (self.zone,)
        self.per_page = per_page
        self.account_id = account_id
        self.tunnel_id = tunnel_id
        self.service = service
        self.missing: tuple[str, ...] = ()
        self._zone_id = ""
        self._ids: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    @property
    def tunnel_host(self) -> str:
        return f"{self.tunnel_id}.{TUNNEL_DOMAIN}" if self.tunnel_id else ""

    # -- the token ------------------------------------------------------------------------------------------------

    def _ready(self) -> str:
        """The zone id, once the token is verified and has every permission it needs to read."""
        if self._zone_id:
            return self._zone_id
        try:
            found = check_token(self.api, self.zone, account_id=self.account_id, tunnel_id=self.tunnel_id)
        except CloudflareError as exc:
            raise ProviderError(f"cloudflare: {exc}") from None
        self._missing(found.missing)
        if not found.ok:
            raise ProviderError(
                f"cloudflare: the API token lacks {', '.join(found.missing)} (zone {self.zone}): edit the token "
                "in the Cloudflare dashboard (My Profile > API Tokens); the next retry picks it up"
            )
        self._zone_id = found.zone_id
        return self._zone_id

    def _missing(self, missing: Iterable[str]) -> None:
        self.missing = tuple(missing)
        for permission in (ZONE_READ, DNS_READ, DNS_EDIT, TUNNEL_READ, TUNNEL_EDIT):
            MISSING.labels(permission).set(1 if permission in self.missing else 0)

    def _error(self, exc: CloudflareError) -> ProviderError:
        if exc.permission:
            self._missing({*self.missing, exc.permission})
            self._zone_id = ""  # check the token again at the next sync: it may have been fixed meanwhile
        return ProviderError(f"cloudflare (zone {self.zone}): {exc}")

    # -- records --------------------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._lock:
            zone_id = self._ready()
            try:
                items = self.api.paged(f"/zones/{zone_id}/dns_records", self.per_page, needs=DNS_READ)
            except CloudflareError as exc:
                raise self._error(exc) from None
            grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for item in items:
                key = (str(item["name"]).lower().rstrip("."), str(item["type"]).upper())
                grouped.setdefault(key, []).append(item)
            self._ids = {}
            out = []
            for (name, rtype), group in grouped.items():
                values = [self._value(rtype, str(i.get("content", ""))) for i in group]
                self._ids[(name, rtype)] = [(str(i["id"]), v) for i, v in zip(group, values, strict=True)]
                proxied = bool(group[0].get("proxied")) if rtype in PROXIABLE else None
                out.append(Record(name, rtype, tuple(sorted(values)), int(group[0].get("ttl") or 1), proxied))
            return sorted(out, key=lambda r: r.key)

    @staticmethod
    def _value(rtype: str, content: str) -> str:
        if rtype == "TXT":
            return txt_value(content)
        if rtype == "CNAME":
            return content.lower().rstrip(".")
        return content

    def apply(self, plan: Plan) -> None:
        with self._lock:
            zone_id = self._ready()
            base = f"/zones/{zone_id}/dns_records"
            try:
                # records before their ownership TXT when deleting, ownership TXT first when creating
                for rec in sorted(plan.delete, key=lambda r: r.type == "TXT"):
                    for record_id, _ in self._ids.pop(rec.key, []):
                        self.api.call("DELETE", f"{base}/{record_id}", needs=DNS_EDIT)
                for old, new in plan.update:
                    self._replace(base, old, new)
                for rec in sorted(plan.create, key=lambda r: r.type != "TXT"):
                    for target in rec.targets:
                        self.api.call("POST", base, body=self._body(rec, target), needs=DNS_EDIT)
            except CloudflareError as exc:
                raise self._error(exc) from None

    def _replace(self, base: str, old: Record, new: Record) -> None:
        """One record per target: existing ids are overwritten in place, extra targets created, extra ids deleted."""
        existing = self._ids.pop(old.key, [])
        targets = list(new.targets)
        for index, (record_id, _) in enumerate(existing):
            if index < len(targets):
                self.api.call("PUT", f"{base}/{record_id}", body=self._body(new, targets[index]), needs=DNS_EDIT)
            else:
                self.api.call("DELETE", f"{base}/{record_id}", needs=DNS_EDIT)
        for target in targets[len(existing) :]:
            self.api.call("POST", base, body=self._body(new, target), needs=DNS_EDIT)

    @staticmethod
    def _body(rec: Record, target: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": rec.type,
            "name": rec.name,
            "content": quote_txt(target) if rec.type == "TXT" else target,
            "ttl": rec.ttl,
        }
        if rec.type in PROXIABLE:
            body["proxied"] = bool(rec.proxied)
        return body

    # -- tunnel routes --------------------------------------------------------------------------------------------

    def publish_routes(self, hostnames: Iterable[str]) -> bool:
        """Make the tunnel's ingress rules route exactly ``hostnames`` to our service; True when it changed."""
        if not self.tunnel_id:
            return False
        path = f"/accounts/{self.account_id}/cfd_tunnel/{self.tunnel_id}/configurations"
        with self._lock:
            try:
                current = (self.api.call("GET", path, needs=TUNNEL_READ).get("result") or {}).get("config") or {}
                config = tunnel_config(current, hostnames, self.service)
                if config == current:
                    return False
                self.api.call("PUT", path, body={"config": config}, needs=TUNNEL_EDIT)
            except CloudflareError as exc:
                raise self._error(exc) from None
        return True


def tunnel_config(current: dict[str, Any], hostnames: Iterable[str], service: str) -> dict[str, Any]:
    """``current`` with our rules (hostname -> service) for exactly ``hostnames``, the user's rules kept in
    their order before ours, and the catch-all 404 last; every other key (originRequest, warp-routing) kept."""
    rules = [r for r in current.get("ingress") or [] if isinstance(r, dict)]
    theirs = [r for r in rules if r.get("hostname") and r.get("service") != service]
    ours = [{"hostname": h, "service": service} for h in sorted(set(hostnames))]
    return {**current, "ingress": [*theirs, *ours, {"service": CATCH_ALL}]}
