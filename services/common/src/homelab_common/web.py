"""The HTTP skeleton every service shares: health, readiness, metrics, request logs, JSON errors.

``install_observability(app, service)`` adds ``/healthz`` (the process is alive), ``/readyz`` (every registered
readiness check passes) and ``/metrics`` (Prometheus text format), logs one line per request, counts requests by
route and status, and turns every error into a JSON body ``{"error", "message", "fields"?}``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from homelab_common.logs import REDACTED, redact

log = logging.getLogger("homelab.http")

REQUESTS = Counter("homelab_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "homelab_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}

ReadinessCheck = Callable[[], "str | None"]


class ApiError(Exception):
    """An error the caller can act on; one status code each, as in matchbox's named errors.

    ``fields`` names the bad input (``{"field": "body.mac", "message": "not a MAC address"}``).
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []


class InvalidInput(ApiError):
    status = 400
    code = "invalid_input"


class Unauthorized(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


@dataclass
class Health:
    """Readiness checks: each returns None when ready, or a reason string when not."""

    checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def evaluate(self) -> dict[str, str]:
        reasons: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:  # a broken check means not ready, never a 500 on /readyz
                reason = f"check failed: {exc}"
            if reason:
                reasons[name] = reason
        return reasons


def health(app: Flask | None = None) -> Health:
    """The app's readiness registry (``health().add("k8s-cache", lambda: None if synced else "syncing")``)."""
    target = app or current_app
    registry: Health = target.extensions["homelab.health"]
    return registry


def loggable_path() -> str:
    """The request path with secret-named path parameters (``<token>``, ``<seed_token>``) redacted.

    Some URLs are credentials (autoinstall's per-machine seed URLs): the request log must not become a copy of them.
    """
    path = request.path
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and value and redact(value, name) == REDACTED:
            path = path.replace(value, REDACTED)
    for pattern in current_app.extensions.get("homelab.secret_paths", []):
        match = pattern.match(path)
        if match and match.group("secret"):
            path = path[: match.start("secret")] + REDACTED + path[match.end("secret") :]
    return path


def redact_paths(app: Flask, *patterns: str) -> None:
    """Also redact the ``(?P<secret>...)`` group of these regexes in logged paths, for requests that match no
    route (a 404 or 405 has no path parameters to go by): ``redact_paths(app, r"^/seed/[^/]+/(?P<secret>[^/]+)")``.
    """
    app.extensions.setdefault("homelab.secret_paths", []).extend(re.compile(p) for p in patterns)


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    return body


def install_observability(app: Flask, service: str) -> Health:
    """Add health, readiness, metrics, request logs and JSON errors to ``app``; returns its readiness registry."""
    registry = Health()
    app.extensions["homelab.health"] = registry
    app.extensions["homelab.service"] = service

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        reasons = registry.evaluate()
        if reasons:
            return jsonify({"status": "not ready", "checks": reasons}), 503
        return jsonify({"status": "ready", "checks": {}}), 200

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    @app.before_request
    def start_timer() -> None:
        g.homelab_started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        started = g.get("homelab_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        LATENCY.labels(service, request.method, route).observe(elapsed)
        level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
        log.log(
            level,
            "request",
            extra={
                "method": request.method,
                "path": loggable_path(),
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "remote": request.remote_addr,
            },
        )
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        log.info("request refused", extra={"error": exc.code, "reason": exc.message, "path": loggable_path()})
        return jsonify(error_body(exc.code, exc.message, exc.fields)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify(error_body(name, exc.description or name))
        response.status_code = status
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> tuple[Response, int]:
        log.error("unhandled error", exc_info=exc, extra={"path": loggable_path()})
        return jsonify(error_body("internal_error", "internal error; see the service's logs")), 500

    return registry
