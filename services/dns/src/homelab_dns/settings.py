"""The DNS updater's settings: ``HOMELAB_DNS_*`` environment variables (lists and records as JSON).

Owner id and policy have no default on purpose: external-dns learned that a silently assumed policy deletes
records users cared about, and an owner id shared by accident lets two installations fight over a zone.
"""

from __future__ import annotations

import socket
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from homelab_common.settings import ServiceSettings
from homelab_dns.core import MAX_TTL, InvalidRecord, normalise_name

_TUNNEL_ID = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"


class StaticRecordSetting(BaseModel):
    """A record from configuration: ``{"name": "nas.home.example.com", "targets": ["192.168.1.5"]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    targets: list[str] = Field(min_length=1)
    ttl: int | None = Field(default=None, ge=1, le=MAX_TTL)
    type: Literal["A", "AAAA", "CNAME", "TXT"] | None = None


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_DNS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "dns"

    #: Written into every ownership TXT record; records with another owner are never touched.
    owner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    #: sync (create, update, delete), upsert-only (never delete) or create-only.
    policy: Literal["sync", "upsert-only", "create-only"]
    #: Zones we manage (the embedded server is authoritative for exactly these); other names are ignored.
    domain_filter: list[str] = Field(min_length=1)
    #: external-dns's --txt-prefix, when migrating from an installation that used one (e.g. ``k8s.``).
    txt_prefix: str = Field(default="", pattern=r"^[a-z0-9_.-]{0,40}$")
    provider: Literal["embedded", "rfc2136", "cloudflare"] = "embedded"
    default_ttl: int = Field(default=300, ge=1, le=MAX_TTL)
    static_records: list[StaticRecordSetting] = Field(default_factory=list)

    # embedded server
    dns_host: str = "0.0.0.0"
    dns_port: int = Field(default=5353, ge=0, le=65535)
    udp_workers: int = Field(default=2, ge=1, le=32)
    #: The zones' NS name (default ``ns.<first domain>``) and, when it is inside a zone, its addresses.
    nameserver: str = ""
    nameserver_addresses: list[str] = Field(default_factory=list)

    # RFC 2136
    rfc2136_server: str = ""
    rfc2136_port: int = Field(default=53, ge=1, le=65535)
    rfc2136_zone: str = ""
    tsig_key_name: str = ""
    tsig_secret: SecretStr | None = None
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512"] = "hmac-sha256"
    rfc2136_timeout: float = Field(default=5.0, gt=0, le=120)

    # Cloudflare: only Ingresses marked public (homelab.dev/public) are published there
    #: The v4 API's base URL (tests point it at a fake)
    cloudflare_api_url: str = Field(default="https://api.cloudflare.com/client/v4", pattern=r"^https?://\S+$")
    #: A scoped API token (Zone:Zone:Read, Zone:DNS:Edit on the zone; Account:Cloudflare Tunnel:Edit with a tunnel)
    cloudflare_api_token: SecretStr | None = None
    #: The zone written (default: the first domain-filter entry)
    cloudflare_zone: str = ""
    cloudflare_account_id: str = Field(default="", pattern=r"^[0-9a-f]{0,32}$")
    #: A remotely-managed tunnel: public Ingresses become its routes and proxied CNAMEs to it
    cloudflare_tunnel_id: str = Field(default="", pattern=_TUNNEL_ID)
    #: Where the tunnel sends public hostnames: the Traefik Service (k3s's packaged Traefik)
    cloudflare_tunnel_service: str = Field(
        default="http://traefik.kube-system.svc.cluster.local:80", pattern=r"^https?://\S+$"
    )
    cloudflare_per_page: int = Field(default=500, ge=5, le=5000)
    cloudflare_timeout: float = Field(default=10.0, gt=0, le=120)
    #: 429 and 5xx answers are retried this many times (waiting Retry-After, else backing off) before a sync fails
    cloudflare_retries: int = Field(default=5, ge=0, le=20)

    # the loop
    debounce_seconds: float = Field(default=0.1, ge=0, le=60)
    resync_seconds: float = Field(default=60.0, ge=1, le=86400)
    backoff_max_seconds: float = Field(default=300.0, ge=1, le=3600)

    # Kubernetes
    kubernetes: bool = True
    #: Watch only this namespace ("" = all).
    namespace: str = ""
    lease_name: str = "homelab-dns"
    lease_namespace: str = "default"
    identity: str = Field(default_factory=socket.gethostname)

    @field_validator("domain_filter")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        try:
            return [normalise_name(d) for d in value]
        except InvalidRecord as exc:
            raise ValueError(str(exc)) from None

    @field_validator("nameserver")
    @classmethod
    def _nameserver(cls, value: str) -> str:
        if not value:
            return value
        try:
            return normalise_name(value)
        except InvalidRecord as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        if self.provider == "rfc2136":
            missing = [
                name
                for name in ("rfc2136_server", "rfc2136_zone", "tsig_key_name", "tsig_secret")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError("provider rfc2136 needs " + ", ".join(f"HOMELAB_DNS_{m.upper()}" for m in missing))
        if self.provider == "cloudflare":
            if self.cloudflare_api_token is None or not self.cloudflare_api_token.get_secret_value().strip():
                raise ValueError("provider cloudflare needs HOMELAB_DNS_CLOUDFLARE_API_TOKEN (from a Secret)")
            if bool(self.cloudflare_tunnel_id) != bool(self.cloudflare_account_id):
                raise ValueError(
                    "HOMELAB_DNS_CLOUDFLARE_TUNNEL_ID and HOMELAB_DNS_CLOUDFLARE_ACCOUNT_ID go together (the tunnel "
                    "lives in the account)"
                )
        return self

    @property
    def effective_cloudflare_zone(self) -> str:
        return normalise_name(self.cloudflare_zone) if self.cloudflare_zone else self.domain_filter[0]

    @property
    def effective_nameserver(self) -> str:
        return self.nameserver or f"ns.{self.domain_filter[0]}"
