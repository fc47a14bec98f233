"""HTTP: the page, the card fragment the page refreshes, the diagnostics view, and the JSON API.

Background work started by :func:`create_app` (so it runs in gunicorn's worker): the page-model builder, the
siteMonitor and href probe loops, the static-list watcher and, when ``HOMELAB_HOMEPAGE_KUBERNETES`` is on, the
Kubernetes watches. A page view only picks up bytes rendered at the last rebuild; a search (``?q=``) filters the
prebuilt model and renders that.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from flask import Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from homelab_common.openapi import Api
from homelab_common.web import InvalidInput, Unavailable, health, install_observability
from homelab_homepage.catalog import Catalog, Rendered, Snapshot, tune_malloc
from homelab_homepage.core import Card, PageModel, filter_groups, matches
from homelab_homepage.ntfy import Notification, NtfyError, Published, publish, to_ntfy
from homelab_homepage.probe import HttpProber, ProbeLoop, Prober
from homelab_homepage.settings import Settings
from homelab_homepage.staticlist import StaticList

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: http: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MAX_QUERY = 200


# -- API types ---------------------------------------------------------------------------------------------

StatusName = Literal["up", "degraded", "down", "unknown"]


class AppHealth(BaseModel):
    """An app's status and why: Ready endpoints/pods and the siteMonitor probe."""

    status: StatusName
    reason: str
    ready: int | None = None
    total: int | None = None
    latency_ms: float | None = None


class AppOut(BaseModel):
    """One app on the page."""

    id: str
    name: str
    group: str
    href: str | None
    icon: str | None
    description: str
    source: str
    convention: str
    site_monitor: str | None
    health: AppHealth


class AppList(BaseModel):
    generation: int
    synced: bool = Field(description="False until the first list of every watched kind has arrived")
    apps: list[AppOut]


class AppsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(default="", max_length=MAX_QUERY, description="Every term must occur in name/description/group/host")
    group: str | None = Field(default=None, max_length=MAX_QUERY)
    status: StatusName | None = None


class DiagnosticOut(BaseModel):
    """A configuration mistake."""

    severity: Literal["error", "warning", "info"]
    kind: str
    source: str
    key: str
    message: str


class DiagnosticList(BaseModel):
    generation: int
    diagnostics: list[DiagnosticOut]


class Summary(BaseModel):
    generation: int
    synced: bool
    apps: int
    by_status: dict[str, int]
    diagnostics: int


def app_out(card: Card) -> AppOut:
    return AppOut(
        id=card.id,
        name=card.name,
        group=card.group,
        href=card.href,
        icon=card.icon_url,
        description=card.description,
        source=card.source,
        convention=card.convention,
        site_monitor=card.site_monitor,
        health=AppHealth(
            status=card.status, reason=card.reason, ready=card.ready, total=card.total, latency_ms=card.latency_ms
        ),
    )


_APP_LIST = TypeAdapter(AppList)


def asset_version() -> str:
    """A content hash of the static assets, so browsers may cache them for a year and still see new ones."""
    digest = hashlib.sha256()
    static = resources.files("homelab_homepage").joinpath("static")
    for name in ("app.css", "app.js", "theme.js", "favicon.svg"):
        digest.update(static.joinpath(name).read_bytes())
    return digest.hexdigest()[:12]


class JinjaRenderer:
    """Renders with the app's Jinja environment (autoescaping on for every .html template)."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self._env = app.jinja_env
        self._common = {
            "title": settings.title,
            "asset_version": asset_version(),
            "refresh_seconds": settings.refresh_seconds,
        }

    def page(self, model: PageModel, query: str, etag: str) -> str:
        groups = filter_groups(model.groups, query)
        template = self._env.get_template("index.html")
        return template.render(model=model, groups=groups, query=query, etag=etag, **self._common)

    def fragment(self, model: PageModel) -> str:
        return self._env.get_template("_groups.html").render(model=model, groups=model.groups, query="")

    def diagnostics(self, model: PageModel) -> str:
        return self._env.get_template("diagnostics.html").render(model=model, **self._common)

    def apps_json(self, model: PageModel) -> bytes:
        value = AppList(generation=model.generation, synced=model.synced, apps=[app_out(c) for c in model.cards])
        return _APP_LIST.dump_json(value)


# -- the service -------------------------------------------------------------------------------------------


@dataclass
class Homepage:
    """The service's parts, kept on ``app.extensions["homepage"]`` so tests can feed and stop them."""

    settings: Settings
    catalog: Catalog
    renderer: JinjaRenderer
    monitors: ProbeLoop
    hrefs: ProbeLoop | None
    static: StaticList | None = None
    kube: Any = None

    def stop(self) -> None:
        for part in (self.kube, self.static, self.hrefs, self.monitors, self.catalog):
            if part is not None:
                part.stop()


def _send(rendered: Rendered, mimetype: str, etag: str | None = None) -> Response:
    """Serve prebuilt bytes, gzipped when they are and the client accepts it; 304 when it already has them."""
    if etag is not None and request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return response
    if rendered.compressed and "gzip" in (request.headers.get("Accept-Encoding") or ""):
        response = Response(rendered.data, mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(rendered.body, mimetype=mimetype)
    if rendered.compressed:
        response.headers["Vary"] = "Accept-Encoding"
    response.headers["Cache-Control"] = "no-cache"
    if etag is not None:
        response.set_etag(etag)
    return response


def _query_text() -> str:
    query = request.args.get("q", "")
    if len(query) > MAX_QUERY:
        raise InvalidInput(
            f"q is longer than {MAX_QUERY} characters", fields=[{"field": "query.q", "message": "too long"}]
        )
    return query


def create_app(
    settings: Settings | None = None, *, prober: Prober | None = None, api_client: Any = None, start: bool = True
) -> Flask:
    """Build the app; with ``start`` the background threads run (tests may pass False and drive them).

    ``api_client`` is the Kubernetes client to watch through (default: from the pod's service account or the
    kubeconfig, see homelab_common.k8s.load_client).
    """
    from homelab_common.settings import load_settings

    settings = settings or load_settings(Settings)
    tune_malloc()
    app = Flask(__name__)
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 365 * 24 * 3600  # assets are addressed by content hash
    app.extensions["settings"] = settings
    renderer = JinjaRenderer(app, settings)
    catalog = Catalog(
        renderer,
        instance_name=settings.instance_name,
        group_weights=settings.group_weights,
        debounce=settings.rebuild_debounce_seconds,
        require_sync=settings.kubernetes,
    )
    probe = prober or HttpProber(settings.probe_timeout_seconds, settings.probe_verify_tls, settings.probe_concurrency)
    monitors = ProbeLoop(
        "siteMonitor",
        catalog.monitor_urls,
        catalog.invalidate,
        probe,
        settings.probe_interval_seconds,
        settings.probe_concurrency,
    )
    hrefs = None
    if settings.href_check_interval_seconds > 0:
        hrefs = ProbeLoop(
            "href",
            catalog.href_urls,
            catalog.invalidate,
            probe,
            settings.href_check_interval_seconds,
            settings.probe_concurrency,
        )
    catalog.use_probes(monitors.results, hrefs.results if hrefs else dict)
    homepage = Homepage(settings, catalog, renderer, monitors, hrefs)
    app.extensions["homepage"] = homepage

    known = {"monitors": set[str](), "hrefs": set[str]()}

    def wake_probes(snapshot: Snapshot) -> None:
        """New URLs to probe: probe them now instead of at the next interval."""
        monitor_urls = {c.site_monitor for c in snapshot.model.cards if c.site_monitor}
        href_urls = {c.href for c in snapshot.model.cards if c.href}
        if monitor_urls - known["monitors"]:
            monitors.wake()
        if hrefs is not None and href_urls - known["hrefs"]:
            hrefs.wake()
        known["monitors"], known["hrefs"] = monitor_urls, href_urls

    catalog.on_rebuild(wake_probes)

    if settings.static_apps_file is not None:
        homepage.static = StaticList(settings.static_apps_file, catalog)
    if settings.kubernetes and start:
        from homelab_homepage.lean import defer_unused_kubernetes_modules

        defer_unused_kubernetes_modules()  # before the watch code imports kubernetes (see lean.py)
        from homelab_homepage.kube import KubeSource

        if api_client is None:
            homepage.kube = KubeSource.from_settings(settings, catalog)
        else:
            homepage.kube = KubeSource(api_client, catalog, resync_seconds=settings.resync_seconds)

    _install_routes(app, homepage)
    install_observability(app, "homepage")
    health(app).add("kubernetes", lambda: None if catalog.synced else "waiting for the first list of every kind")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    if start:
        catalog.start()
        if homepage.static is not None:
            homepage.static.start()
        monitors.start()
        if hrefs is not None:
            hrefs.start()
        if homepage.kube is not None:
            homepage.kube.start()
    elif homepage.static is not None:
        homepage.static.load()
    return app


def _install_routes(app: Flask, homepage: Homepage) -> None:
    catalog, renderer = homepage.catalog, homepage.renderer
    api = Api("homepage", "1.0.0", description="Apps discovered from Ingresses and a static list, with their health")

    @app.get("/")
    def index() -> Response:
        snapshot = catalog.snapshot
        query = _query_text()
        if not query.strip():
            return _send(snapshot.page, "text/html")
        html = renderer.page(snapshot.model, query, snapshot.etag)
        return Response(html, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/fragment")
    def fragment() -> Response:
        snapshot = catalog.snapshot
        return _send(snapshot.fragment, "text/html", etag=snapshot.etag)

    @app.get("/diagnostics")
    def diagnostics() -> Response:
        return Response(renderer.diagnostics(catalog.snapshot.model), mimetype="text/html")

    @api.get("/api/v1/apps", summary="Apps and their health", query=AppsQuery, responses={200: AppList}, tags=["apps"])
    def list_apps(query: AppsQuery) -> AppList | Response:
        snapshot = catalog.snapshot
        if not query.q.strip() and query.group is None and query.status is None:
            return _send(snapshot.apps_json, "application/json")
        model = snapshot.model
        cards = [
            c
            for c in model.cards
            if matches(c, query.q)
            and (query.group is None or c.group == query.group)
            and (query.status is None or c.status == query.status)
        ]
        return AppList(generation=model.generation, synced=model.synced, apps=[app_out(c) for c in cards])

    @api.get("/api/v1/diagnostics", summary="Configuration mistakes", responses={200: DiagnosticList}, tags=["apps"])
    def list_diagnostics() -> DiagnosticList:
        model = catalog.snapshot.model
        items = [
            DiagnosticOut(severity=d.severity, kind=d.kind, source=d.source, key=d.key, message=d.message)
            for d in model.diagnostics
        ]
        return DiagnosticList(generation=model.generation, diagnostics=items)

    @api.get("/api/v1/summary", summary="Counts by status", responses={200: Summary}, tags=["apps"])
    def summary() -> Summary:
        model = catalog.snapshot.model
        return Summary(
            generation=model.generation,
            synced=model.synced,
            apps=len(model.cards),
            by_status=dict(model.counts),
            diagnostics=len(model.diagnostics),
        )

    settings = homepage.settings
    if settings.ntfy_url is not None:
        ntfy_url, topic = str(settings.ntfy_url), settings.ntfy_topic
        token = settings.ntfy_token.get_secret_value() if settings.ntfy_token else None

        @api.post(
            "/api/v1/alerts/ntfy",
            summary="Alertmanager webhook: publish the notification to ntfy",
            body=Notification,
            responses={200: Published},
            tags=["alerts"],
        )
        def alerts_to_ntfy(body: Notification) -> Published:
            message = to_ntfy(body, topic)
            try:
                publish(ntfy_url, message, token)
            except NtfyError as exc:
                log.warning("ntfy publish failed", extra={"error": str(exc), "receiver": body.receiver})
                raise Unavailable(f"{exc}; Alertmanager will retry") from None
            log.info("alert published to ntfy", extra={"title": message["title"], "receiver": body.receiver})
            return Published(topic=topic, title=message["title"], priority=message["priority"])

    api.install(app)
