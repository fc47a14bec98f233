"""A FAKE of the Cloudflare v4 API endpoints we use, for tests and benchmarks: real HTTP on 127.0.0.1.

This is not Cloudflare. It is a contract fake written from Cloudflare's published API documentation
(developers.cloudflare.com/api: "Verify Token", "List Zones", "List/Create/Overwrite/Delete DNS Records",
"Get/Put configuration" of a cfd_tunnel), serving only what homelab calls, with the documented envelope
(``success``, ``errors``, ``messages``, ``result``, ``result_info``) and pagination (``page``, ``per_page``;
dns_records default 100 per page). Where the documentation is silent we chose the strict reading:

- a token sees only the zones it was given (an empty list otherwise); a call its permissions do not cover is
  403 with error 10000 "Authentication error"; an unknown token is 401 (1000 "Invalid API Token");
- a CNAME cannot share its name with another record, nor an identical record be created twice (400, 81053 and
  81058); ``proxied`` only on A, AAAA and CNAME; a proxied record's TTL is 1 ("automatic");
- a tunnel configuration's last ingress rule must have no hostname (cloudflared's own rule), 400 otherwise.

Faults for the error paths: ``fail(status, times, retry_after=..., path=...)`` answers the next matching calls
with that status (429 with ``Retry-After``, 5xx...). ``calls`` records every request (method, path, query).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from homelab_common.cloudflare import DNS_EDIT, DNS_READ, TUNNEL_EDIT, TUNNEL_READ, ZONE_READ

ALL_PERMISSIONS = frozenset({ZONE_READ, DNS_READ, DNS_EDIT, TUNNEL_READ, TUNNEL_EDIT})
#: Reading is allowed by the edit permission too, as in the dashboard's token editor.
_IMPLIED = {DNS_READ: DNS_EDIT, TUNNEL_READ: TUNNEL_EDIT}


@dataclass
class Token:
    permissions: frozenset[str] = ALL_PERMISSIONS
    status: str = "active"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Fault:
    status: int
    times: int
    retry_after: str | None
    path: str


class ApiFailure(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeCloudflare:
    """The fake's state (zones, records, tunnels, tokens) and its HTTP server; ``url`` is the API base."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.zones: dict[str, str] = {}  # name -> id
        self.records: dict[str, dict[str, dict[str, Any]]] = {}  # zone id -> record id -> record
        self.tunnels: dict[tuple[str, str], dict[str, Any]] = {}  # (account, tunnel) -> {"config", "version"}
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- setup ----------------------------------------------------------------------------------------------------

    def add_token(self, token: str, permissions: frozenset[str] = ALL_PERMISSIONS, status: str = "active") -> None:
        self.tokens[token] = Token(frozenset(permissions), status)

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        self.zones[name] = zone_id
        self.records[zone_id] = {}
        return zone_id

    def add_record(self, zone: str, rtype: str, name: str, content: str, ttl: int = 300, **extra: Any) -> str:
        zone_id = self.zones[zone]
        record_id = uuid.uuid4().hex
        record = {"id": record_id, "type": rtype, "name": name, "content": content, "ttl": ttl, **extra}
        record.setdefault("proxied", False)
        with self.lock:
            self.records[zone_id][record_id] = record
        return record_id

    def add_tunnel(self, account_id: str, tunnel_id: str, config: dict[str, Any] | None = None) -> None:
        self.tunnels[(account_id, tunnel_id)] = {"config": config, "version": 0}

    def fail(self, status: int, times: int = 1, *, retry_after: str | None = None, path: str = "") -> None:
        """Answer the next ``times`` calls whose path contains ``path`` with ``status``."""
        with self.lock:
            self.faults.append(Fault(status, times, retry_after, path))

    # -- reading back ---------------------------------------------------------------------------------------------

    def zone_records(self, zone: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.records[self.zones[zone]].values()]

    def find(self, zone: str, name: str, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.zone_records(zone) if r["name"] == name and r["type"] == rtype]

    def tunnel_config(self, account_id: str, tunnel_id: str) -> dict[str, Any] | None:
        with self.lock:
            config = self.tunnels[(account_id, tunnel_id)]["config"]
            return json.loads(json.dumps(config)) if config is not None else None

    def count(self, method: str, fragment: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.calls if m == method and fragment in p)

    # -- the server -----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/client/v4"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-cloudflare", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path.removeprefix("/client/v4")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self.lock:
            self.calls.append((handler.command, path, query))
        try:
            fault = self._fault(path)
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                raise ApiFailure(fault.status, 10000 if fault.status == 429 else 10001, "injected fault", headers)
            token = self._token(handler.headers.get("Authorization", ""), path)
            body = json.loads(raw) if raw else None
            status, envelope = self._route(handler.command, path, query, body, token)
        except ApiFailure as exc:
            self._send(handler, exc.status, _envelope(None, [(exc.code, exc.message)]), exc.headers)
            return
        except (ValueError, KeyError, TypeError) as exc:
            self._send(handler, 400, _envelope(None, [(1004, f"bad request: {exc}")]))
            return
        self._send(handler, status, envelope)

    def _fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _token(self, authorization: str, path: str) -> Token:
        scheme, _, value = authorization.partition(" ")
        token = self.tokens.get(value) if scheme == "Bearer" else None
        if token is None:
            raise ApiFailure(401, 1000 if path == "/user/tokens/verify" else 10000, "Invalid API Token")
        return token

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, envelope: dict[str, Any], headers: Any = None) -> None:
        data = json.dumps(envelope).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    # -- the endpoints --------------------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/user/tokens/verify":
            if token.status != "active":
                raise ApiFailure(401, 1000, f"This API Token is {token.status}")
            return 200, _envelope({"id": token.id, "status": token.status})
        if method == "GET" and path == "/zones":
            visible = ZONE_READ in token.permissions
            found = [
                {"id": zid, "name": name, "status": "active"}
                for name, zid in sorted(self.zones.items())
                if visible and query.get("name", name) == name
            ]
            return 200, _envelope(found, info=(1, 20, len(found), len(found)))
        if match := re.fullmatch(r"/zones/([0-9a-f]+)/dns_records(?:/([0-9a-f]+))?", path):
            return self._dns(method, match.group(1), match.group(2), query, body, token)
        if match := re.fullmatch(r"/accounts/([0-9a-f]+)/cfd_tunnel/([0-9a-f-]+)/configurations", path):
            return self._tunnel(method, (match.group(1), match.group(2)), body, token)
        raise ApiFailure(404, 7003, f"No route for that URI: {method} {path}")

    def _dns(
        self, method: str, zone_id: str, record_id: str | None, query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, dict[str, Any]]:
        if zone_id not in self.records:
            raise ApiFailure(404, 7003, "Could not route to the zone")
        _allow(token, DNS_READ if method == "GET" else DNS_EDIT)
        with self.lock:
            records = self.records[zone_id]
            if method == "GET" and record_id is None:
                page = max(int(query.get("page", 1)), 1)
                per_page = min(max(int(query.get("per_page", 100)), 5), 5_000_000)
                chosen = [
                    r
                    for r in records.values()
                    if query.get("name", r["name"]) == r["name"] and query.get("type", r["type"]) == r["type"]
                ]
                chunk = chosen[(page - 1) * per_page : page * per_page]
                return 200, _envelope([dict(r) for r in chunk], info=(page, per_page, len(chunk), len(chosen)))
            if record_id is not None and record_id not in records:
                raise ApiFailure(404, 81044, "Record does not exist.")
            if method == "DELETE" and record_id is not None:
                del records[record_id]
                return 200, _envelope({"id": record_id})
            if method in ("POST", "PUT") and isinstance(body, dict):
                zone = next(name for name, zid in self.zones.items() if zid == zone_id)
                record = _validated(body, zone)
                others = [r for rid, r in records.items() if rid != record_id and r["name"] == record["name"]]
                if any(r["type"] == record["type"] and r["content"] == record["content"] for r in others):
                    raise ApiFailure(400, 81058, "An identical record already exists.")
                if others and "CNAME" in {record["type"], *(r["type"] for r in others)}:
                    raise ApiFailure(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
                record["id"] = record_id or uuid.uuid4().hex
                records[record["id"]] = record
                return 200, _envelope(dict(record))
        raise ApiFailure(405, 10405, "Method not allowed")

    def _tunnel(self, method: str, key: tuple[str, str], body: Any, token: Token) -> tuple[int, dict[str, Any]]:
        _allow(token, TUNNEL_READ if method == "GET" else TUNNEL_EDIT)
        with self.lock:
            tunnel = self.tunnels.get(key)
            if tunnel is None:
                raise ApiFailure(404, 1003, "Tunnel not found")
            if method == "PUT" and isinstance(body, dict):
                config = body.get("config")
                rules = config.get("ingress") if isinstance(config, dict) else None
                if not isinstance(rules, list) or not rules:
                    raise ApiFailure(400, 1056, "config.ingress: at least the catch-all rule is required")
                if any(not isinstance(r, dict) or not r.get("service") for r in rules):
                    raise ApiFailure(400, 1056, "every ingress rule needs a service")
                if rules[-1].get("hostname"):
                    raise ApiFailure(400, 1056, "The last ingress rule must match all URLs (no hostname)")
                tunnel["config"] = json.loads(json.dumps(config))
                tunnel["version"] += 1
            elif method != "GET":
                raise ApiFailure(405, 10405, "Method not allowed")
            result = {
                "account_id": key[0],
                "tunnel_id": key[1],
                "config": tunnel["config"],
                "version": tunnel["version"],
                "source": "cloudflare",
            }
            return 200, _envelope(json.loads(json.dumps(result)))


def _allow(token: Token, permission: str) -> None:
    if permission in token.permissions or _IMPLIED.get(permission) in token.permissions:
        return
    raise ApiFailure(403, 10000, "Authentication error")


def _validated(body: dict[str, Any], zone: str) -> dict[str, Any]:
    rtype, name, content = str(body["type"]), str(body["name"]).lower().rstrip("."), str(body["content"])
    if not (name == zone or name.endswith("." + zone)):
        raise ApiFailure(400, 1004, f"DNS Validation Error: {name} is not in zone {zone}")
    proxied = bool(body.get("proxied", False))
    if proxied and rtype not in ("A", "AAAA", "CNAME"):
        raise ApiFailure(400, 9004, f"a {rtype} record cannot be proxied")
    ttl = int(body.get("ttl", 1))
    if ttl != 1 and not 60 <= ttl <= 86400:
        raise ApiFailure(400, 9021, "TTL must be between 60 and 86400 seconds, or 1 for Automatic")
    if rtype == "TXT" and not content.startswith('"'):
        content = json.dumps(content)  # the API stores TXT content as quoted character strings
    return {"type": rtype, "name": name, "content": content, "ttl": 1 if proxied else ttl, "proxied": proxied}


def _envelope(
    result: Any, errors: list[tuple[int, str]] | None = None, info: tuple[int, int, int, int] | None = None
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "success": not errors,
        "errors": [{"code": c, "message": m} for c, m in errors or []],
        "messages": [],
        "result": result,
    }
    if info is not None:
        page, per_page, count, total = info
        envelope["result_info"] = {
            "page": page,
            "per_page": per_page,
            "count": count,
            "total_count": total,
            "total_pages": max(1, -(-total // per_page)),
        }
    return envelope


@contextmanager
def fake_cloudflare() -> Iterator[FakeCloudflare]:
    """A started fake, stopped at the end."""
    fake = FakeCloudflare()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
