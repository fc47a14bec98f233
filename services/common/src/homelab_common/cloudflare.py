"""A small client for Cloudflare's v4 API with a scoped API token, and the check of what that token may do.

Shared by the dns service (records and tunnel routes) and ``task configure`` (which checks the token before it
writes the site file). Only the endpoints we use: ``/user/tokens/verify``, ``/zones``, ``/zones/{id}/dns_records``
and ``/accounts/{id}/cfd_tunnel/{id}/configurations``. The base URL is a setting, so tests point it at a fake.

Rate limits (429, waiting ``Retry-After``) and server errors (5xx, connection failures) are retried with
exponential backoff, a bounded number of times; anything else fails at once with :class:`CloudflareError`,
whose message names the call and, for 401/403, the token permission the call needs.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"

#: The permissions the dashboard's "Create Custom Token" form offers, as we name them in messages.
ZONE_READ = "Zone:Zone:Read"
DNS_READ = "Zone:DNS:Read"
DNS_EDIT = "Zone:DNS:Edit"
TUNNEL_READ = "Account:Cloudflare Tunnel:Read"
TUNNEL_EDIT = "Account:Cloudflare Tunnel:Edit"

#: The TXT record ``check_token(write_probe=True)`` creates and deletes at once to prove Zone:DNS:Edit.
PROBE_LABEL = "_homelab-token-check"
#: The last rule of every tunnel configuration (cloudflared requires a rule without a hostname last).
CATCH_ALL = "http_status:404"


class CloudflareError(Exception):
    """A call failed; ``status`` is the HTTP status (0: no answer) and ``permission`` what a 401/403 lacked."""

    def __init__(self, message: str, status: int = 0, permission: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.permission = permission


class CloudflareApi:
    """JSON over HTTPS with ``Authorization: Bearer <token>``; the token never appears in a log or message."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.requests = 0

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        needs: str = "",
    ) -> dict[str, Any]:
        """One API call, retried on 429/5xx; returns the JSON envelope (``result``, ``result_info``...)."""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        what = f"{method} {path}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the URL is a setting
            request.add_header("Authorization", f"Bearer {self._token}")
            request.add_header("Content-Type", "application/json")
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    return _envelope(response.read(), what)
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                retry = exc.code == 429 or exc.code >= 500
                if not retry or attempt == self.retries:
                    raise _http_error(what, exc.code, payload, needs) from None
                wait = self._wait(attempt, exc.headers.get("Retry-After") if exc.code == 429 else None)
                log.warning("cloudflare call retried", extra={"call": what, "status": exc.code, "wait": wait})
            except (OSError, TimeoutError) as exc:
                if attempt == self.retries:
                    reason = getattr(exc, "reason", None) or exc
                    raise CloudflareError(f"{what}: no answer from {self.base_url}: {reason}") from None
                wait = self._wait(attempt, None)
                log.warning("cloudflare call retried", extra={"call": what, "error": str(exc), "wait": wait})
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_wait)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return float(min(self.backoff * 2**attempt, self.max_wait))

    def paged(
        self, path: str, per_page: int, *, query: Mapping[str, str | int] | None = None, needs: str = ""
    ) -> list[Any]:
        """Every item of a paginated list (``page``/``per_page``, until ``result_info.total_pages``)."""
        items: list[Any] = []
        page = 1
        while True:
            envelope = self.call("GET", path, query={**(query or {}), "page": page, "per_page": per_page}, needs=needs)
            result = envelope.get("result") or []
            items += result
            info = envelope.get("result_info") or {}
            total_pages = int(info.get("total_pages") or 1)
            if page >= total_pages or not result:
                return items
            page += 1

    def zone_id(self, zone: str) -> str:
        """The id of the zone named ``zone``; a missing one names the permission that lets the token see it."""
        found = self.call("GET", "/zones", query={"name": zone}, needs=ZONE_READ).get("result") or []
        for item in found:
            if str(item.get("name", "")).lower() == zone:
                return str(item["id"])
        raise CloudflareError(
            f"zone {zone} is not visible to the token: give it {ZONE_READ} and {DNS_EDIT} on {zone} "
            "(or the zone is not on this Cloudflare account)",
            404,
            ZONE_READ,
        )


def _envelope(raw: bytes, what: str) -> dict[str, Any]:
    try:
        envelope = json.loads(raw or b"{}")
    except ValueError:
        raise CloudflareError(f"{what}: the answer is not JSON") from None
    if not isinstance(envelope, dict):
        raise CloudflareError(f"{what}: unexpected answer")
    if envelope.get("success") is False:
        raise CloudflareError(f"{what}: {_messages(envelope)}", 200)
    return envelope


def _messages(envelope: Mapping[str, Any]) -> str:
    errors = envelope.get("errors") or []
    texts = [f"{e.get('message', '')} (code {e.get('code', '?')})" for e in errors if isinstance(e, dict)]
    return "; ".join(texts) or "failed"


def _http_error(what: str, status: int, payload: bytes, needs: str) -> CloudflareError:
    try:
        detail = _messages(json.loads(payload or b"{}"))
    except (ValueError, AttributeError):
        detail = payload[:200].decode("utf-8", "replace")
    if status in (401, 403):
        hint = f": the token lacks {needs}" if needs else ": the token is not allowed to do this"
        return CloudflareError(f"{what} refused with {status}{hint} ({detail})", status, needs)
    if status == 429:
        return CloudflareError(f"{what}: still rate limited after retries ({detail})", status)
    return CloudflareError(f"{what} failed with {status}: {detail}", status)


@dataclass(frozen=True)
class TokenCheck:
    """What ``check_token`` found: the zone id, and the permissions the token lacks (empty: all there)."""

    zone_id: str
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


def check_token(
    api: CloudflareApi,
    zone: str,
    *,
    account_id: str = "",
    tunnel_id: str = "",
    write_probe: bool = False,
) -> TokenCheck:
    """Verify the token, then probe what it can do; raises CloudflareError when the token itself is not valid.

    Reads prove Zone:Zone:Read, Zone:DNS:Read and (with a tunnel) Cloudflare Tunnel:Read. Cloudflare has no call
    that lists a token's own permissions without a further permission, so with ``write_probe`` the edit
    permissions are proven by writing: a TXT record ``_homelab-token-check.<zone>`` created and deleted at once,
    and the tunnel's configuration PUT back unchanged. Without it, a missing edit permission shows at the first
    write (with the same message).
    """
    verify = api.call("GET", "/user/tokens/verify", needs="a valid, active token").get("result") or {}
    status = verify.get("status")
    if status != "active":
        raise CloudflareError(f"the API token is {status or 'not valid'}: create a new one", 401)
    missing: list[str] = []
    try:
        zone_id = api.zone_id(zone)
    except CloudflareError as exc:
        if exc.status not in (401, 403, 404):
            raise
        return TokenCheck("", (ZONE_READ, DNS_EDIT) + ((TUNNEL_EDIT,) if tunnel_id else ()))
    records = f"/zones/{zone_id}/dns_records"
    if _refused(lambda: api.call("GET", records, query={"per_page": 5}, needs=DNS_READ)):
        missing.append(DNS_EDIT)
    elif write_probe:
        body = {"type": "TXT", "name": f"{PROBE_LABEL}.{zone}", "content": '"homelab token check"', "ttl": 60}
        created: dict[str, Any] = {}
        if _refused(lambda: created.update(api.call("POST", records, body=body, needs=DNS_EDIT))):
            missing.append(DNS_EDIT)
        elif (record_id := (created.get("result") or {}).get("id")) is not None:
            api.call("DELETE", f"{records}/{record_id}", needs=DNS_EDIT)
    if tunnel_id:
        path = f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations"
        config: dict[str, Any] = {}
        if _refused(lambda: config.update(api.call("GET", path, needs=TUNNEL_READ))):
            missing.append(TUNNEL_EDIT)
        elif write_probe:
            # a tunnel without a configuration yet gets the one we would write for no public app
            current = (config.get("result") or {}).get("config") or {"ingress": [{"service": CATCH_ALL}]}
            if _refused(lambda: api.call("PUT", path, body={"config": current}, needs=TUNNEL_EDIT)):
                missing.append(TUNNEL_EDIT)
    return TokenCheck(zone_id, tuple(missing))


def _refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except CloudflareError as exc:
        if exc.status in (401, 403):
            return True
        raise
    return False
