"""The HTTP API and the wiring: provider, embedded server, sources, leader election, the loop.

``create_app`` starts the background work (the embedded DNS server's threads, the Kubernetes watches, the
leader elector and the sync loop) in the process that serves HTTP: gunicorn runs one worker, built by the
factory, so the zone lives in exactly one process. ``Runtime.stop`` ends it (tests; gunicorn just exits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import kubernetes.client
from flask import Flask
from pydantic import BaseModel, ConfigDict

from homelab_common.cloudflare import CloudflareApi
from homelab_common.k8s import Backoff, load_client
from homelab_common.openapi import Api
from homelab_common.settings import load_settings
from homelab_common.web import Unavailable, install_observability
from homelab_dns.controller import Controller, Source, StaticSource
from homelab_dns.core import (
    Desired,
    Endpoint,
    Problem,
    Record,
    RecordState,
    StaticRecord,
    cloudflare_endpoints,
    static_endpoints,
)
from homelab_dns.kube import KubeWiring, Select, every_host
from homelab_dns.providers import Provider
from homelab_dns.providers.cloudflare import Cloudflare
from homelab_dns.providers.embedded import DnsServer, Zone, zone_config
from homelab_dns.providers.rfc2136 import Rfc2136
from homelab_dns.settings import Settings

log = logging.getLogger(__name__)


class RecordData(BaseModel):
    targets: list[str]
    ttl: int
    #: Cloudflare's proxy (A, AAAA, CNAME there); null elsewhere
    proxied: bool | None = None


class RecordOut(BaseModel):
    """A record: what the sources want, what the provider holds, whose it is, and what the next sync does."""

    name: str
    type: str
    state: RecordState
    desired: RecordData | None
    actual: RecordData | None
    owner: str | None
    source: str | None
    reason: str


class ProblemOut(BaseModel):
    """An endpoint that cannot be published, and why."""

    source: str
    name: str
    reason: str


class StatusOut(BaseModel):
    provider: str
    leader: bool
    writes: bool
    owner_id: str
    policy: str
    domains: list[str]
    last_success: float | None
    consecutive_errors: int
    last_error: str
    syncs: int
    records: dict[str, int]
    invalid: list[ProblemOut]
    #: Cloudflare: the permissions the API token lacks (empty when it has them all)
    missing_permissions: list[str] = []


class RecordsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: RecordState | None = None
    name: str | None = None


class SyncOut(BaseModel):
    """The result of a sync."""

    applied: bool
    created: int
    updated: int
    deleted: int


def _data(record: Record | None) -> RecordData | None:
    if record is None:
        return None
    return RecordData(targets=list(record.targets), ttl=record.ttl, proxied=record.proxied)


@dataclass
class Runtime:
    settings: Settings
    provider: Provider
    controller: Controller
    server: DnsServer | None = None
    kube: KubeWiring | None = None

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
        if self.kube is not None:
            self.kube.start()
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
        if self.kube is not None:
            self.kube.stop()
        if self.server is not None:
            self.server.stop()


def build_provider(settings: Settings) -> tuple[Provider, DnsServer | None]:
    if settings.provider == "cloudflare":
        token = settings.cloudflare_api_token.get_secret_value().strip() if settings.cloudflare_api_token else ""
        api = CloudflareApi(
            token,
            settings.cloudflare_api_url,
            timeout=settings.cloudflare_timeout,
            retries=settings.cloudflare_retries,
            max_wait=settings.backoff_max_seconds,
        )
        cloudflare = Cloudflare(
            api,
            settings.effective_cloudflare_zone,
            per_page=settings.cloudflare_per_page,
            account_id=settings.cloudflare_account_id,
            tunnel_id=settings.cloudflare_tunnel_id,
            service=settings.cloudflare_tunnel_service,
        )
        return cloudflare, None
    if settings.provider == "rfc2136":
        secret = settings.tsig_secret.get_secret_value() if settings.tsig_secret else ""
        provider = Rfc2136(
            settings.rfc2136_server,
            settings.rfc2136_zone,
            settings.tsig_key_name,
            secret,
            port=settings.rfc2136_port,
            algorithm=settings.tsig_algorithm,
            timeout=settings.rfc2136_timeout,
        )
        return provider, None
    zone = Zone(zone_config(settings.domain_filter, settings.effective_nameserver, settings.nameserver_addresses))
    return zone, DnsServer(zone, settings.dns_host, settings.dns_port, settings.udp_workers)


def static_source(settings: Settings) -> StaticSource:
    endpoints: list[Endpoint] = []
    problems: list[Problem] = []
    for item in settings.static_records:
        found, bad = static_endpoints(
            StaticRecord(item.name, tuple(item.targets), item.ttl, item.type), settings.default_ttl
        )
        endpoints += found
        problems += bad
    return StaticSource(endpoints, problems)


def build_runtime(
    settings: Settings,
    *,
    api_client: kubernetes.client.ApiClient | None = None,
    kube_backoff: Backoff | None = None,
) -> Runtime:
    """Provider, embedded server, sources and the loop; with ``settings.kubernetes``, watches and the Lease."""
    provider, server = build_provider(settings)
    # Cloudflare gets only what is marked public; static records are the LAN's (the router, the NAS)
    sources: list[Source] = [] if isinstance(provider, Cloudflare) else [static_source(settings)]
    select: Select = every_host
    after_apply = None
    if isinstance(provider, Cloudflare):
        tunnel_host = provider.tunnel_host

        def select(obj: Any, kind: str, ttl: int) -> tuple[list[Endpoint], list[Problem]]:
            return cloudflare_endpoints(obj, kind, ttl, tunnel_host)

        if tunnel_host:
            after_apply = partial(_publish_routes, provider)
    kube: KubeWiring | None = None
    if settings.kubernetes:
        kube = KubeWiring(
            api_client or load_client(),
            default_ttl=settings.default_ttl,
            namespace=settings.namespace,
            lease_namespace=settings.lease_namespace,
            lease_name=settings.lease_name,
            identity=settings.identity,
            resync=settings.resync_seconds,
            backoff=kube_backoff,
            select=select,
        )
        sources.append(kube.source)
    controller = Controller(
        provider,
        sources,
        owner=settings.owner_id,
        policy=settings.policy,
        domains=settings.domain_filter,
        txt_prefix=settings.txt_prefix,
        is_leader=kube.is_leader if kube else (lambda: True),
        report=kube.report if kube else None,
        informers=kube.informers if kube else (),
        debounce=settings.debounce_seconds,
        resync=settings.resync_seconds,
        backoff_max=settings.backoff_max_seconds,
        after_apply=after_apply,
    )
    runtime = Runtime(settings, provider, controller, server)
    if kube is not None:
        kube.connect(controller)
        runtime.kube = kube
    return runtime


def _publish_routes(provider: Cloudflare, desired: Desired) -> None:
    """The tunnel routes every public hostname whose wanted record is the CNAME to the tunnel."""
    hosts = [ep.record.name for ep in desired.records.values() if ep.record.targets == (provider.tunnel_host,)]
    if provider.publish_routes(hosts):
        log.info("tunnel routes updated", extra={"tunnel": provider.tunnel_id, "hostnames": sorted(hosts)})


def token_ready(provider: Provider) -> str | None:
    """Readiness of a Cloudflare replica: not ready while the token lacks a permission (named)."""
    missing = getattr(provider, "missing", ())
    return f"the Cloudflare API token lacks {', '.join(missing)}" if missing else None


def make_api(runtime: Runtime) -> Api:
    api = Api("dns", "1.0.0", "DNS records that follow Ingresses and Services, never touching what is not ours")
    controller = runtime.controller

    @api.get(
        "/records",
        summary="Desired vs actual records, with owner, source and state",
        query=RecordsQuery,
        responses={200: list[RecordOut]},
    )
    def records(query: RecordsQuery) -> list[RecordOut]:
        out = []
        for view in controller.state.plan.views:
            if query.state is not None and view.state != query.state:
                continue
            if query.name is not None and view.name != query.name.lower().rstrip("."):
                continue
            out.append(
                RecordOut(
                    name=view.name,
                    type=view.type,
                    state=view.state,
                    desired=_data(view.desired),
                    actual=_data(view.actual),
                    owner=view.owner,
                    source=view.resource,
                    reason=view.reason,
                )
            )
        return out

    @api.get("/status", summary="How the sync loop is doing", responses={200: StatusOut})
    def status() -> StatusOut:
        state = controller.state
        leader = controller.is_leader()
        return StatusOut(
            provider=runtime.provider.name,
            leader=leader,
            writes=leader or not runtime.provider.shared,
            owner_id=controller.owner,
            policy=controller.policy,
            domains=controller.domains,
            last_success=state.last_success,
            consecutive_errors=state.consecutive_errors,
            last_error=state.last_error,
            syncs=state.syncs,
            records=state.plan.states(),
            invalid=[ProblemOut(source=p.resource, name=p.name, reason=p.reason) for p in state.desired.problems],
            missing_permissions=list(getattr(runtime.provider, "missing", ())),
        )

    @api.post(
        "/sync",
        summary="Sync now",
        description="Reads the sources and the provider and applies the plan (the leader only, for a shared "
        "provider). 503 with the provider's error when it fails; the loop keeps retrying on its own.",
        responses={200: SyncOut, 503: Unavailable},
    )
    def sync() -> SyncOut:
        result = controller.sync()
        if not result.ok:
            raise Unavailable(result.error)
        return SyncOut(applied=result.applied, created=result.created, updated=result.updated, deleted=result.deleted)

    return api


def create_app(settings: Settings | None = None, **runtime_options: Any) -> Flask:
    """The app, with its background work started (``runtime_options`` go to :func:`build_runtime`)."""
    settings = settings or load_settings(Settings)
    runtime = build_runtime(settings, **runtime_options)
    app = Flask("homelab_dns")
    app.extensions["settings"] = settings
    app.extensions["homelab_dns"] = runtime
    make_api(runtime).install(app)
    health = install_observability(app, "dns")
    health.add("sync", runtime.controller.ready)
    if isinstance(runtime.provider, Cloudflare):
        # a Cloudflare replica serves no DNS, so an unready one takes nothing away from the LAN
        health.add("cloudflare-token", partial(token_ready, runtime.provider))
    runtime.start()
    return app
