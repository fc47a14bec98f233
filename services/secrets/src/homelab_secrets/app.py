"""The HTTP API (managed Secrets, never their values; ask for a rotation) and the wiring of the controller.

``create_app`` starts the watches and the leader elector in the process that serves HTTP (gunicorn's one worker);
only the Lease holder writes, every replica answers the API from its own watch cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kubernetes.client
from flask import Flask
from pydantic import BaseModel, ConfigDict, Field

from homelab_common.k8s import Backoff, load_client
from homelab_common.openapi import Api
from homelab_common.settings import load_settings
from homelab_common.web import Conflict, NotFound, Unavailable, install_observability
from homelab_secrets import spec as ann
from homelab_secrets.controller import Controller
from homelab_secrets.core import View, describe, rfc3339
from homelab_secrets.hooks import default_hooks
from homelab_secrets.settings import Settings

log = logging.getLogger(__name__)


class ManagedSecret(BaseModel):
    """An annotated Secret: what it holds (key names only) and where it is in its life."""

    namespace: str
    name: str
    state: str = Field(description="ok, pending (a hooked rotation in progress), unfilled, error or refused")
    type: str
    keys: list[str]
    user_keys: list[str] = Field(description="keys holding a value someone else set: never overwritten")
    age_seconds: float | None
    generated_at: str | None
    rotated_at: str | None
    next_rotation: str | None
    last_error: str


class SecretsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str | None = None
    state: str | None = None


class RotationRequested(BaseModel):
    namespace: str
    name: str
    requested_at: str


class DefaultFound(BaseModel):
    secret: str
    key: str
    app: str


class StatusOut(BaseModel):
    leader: bool
    managed: int
    refused: int
    errors: int
    passes: int
    last_pass: str | None
    default_passwords: list[DefaultFound]


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def _out(namespace: str, name: str, created: float, view: View, now: float) -> ManagedSecret:
    return ManagedSecret(
        namespace=namespace,
        name=name,
        state=view.state,
        type=view.type,
        keys=list(view.keys),
        user_keys=list(view.user_keys),
        age_seconds=round(now - created, 1) if created else None,
        generated_at=_time(view.generated_at),
        rotated_at=_time(view.rotated_at),
        next_rotation=_time(view.next_rotation),
        last_error=view.last_error,
    )


def make_api(controller: Controller) -> Api:
    api = Api("secrets", "1.0.0", "Annotated Secrets filled and rotated in the cluster; values never leave it")

    def views() -> list[ManagedSecret]:
        now = time.time()
        found = []
        for record in controller.secrets.list():
            obs = record.observed
            if ann.is_annotated(obs.annotations):  # not the copies (copy-of): they are only written into
                found.append(_out(obs.namespace, obs.name, obs.created, describe(obs), now))
        return sorted(found, key=lambda s: (s.namespace, s.name))

    @api.get(
        "/secrets",
        summary="Annotated Secrets: type, key names, age, next rotation, last error (never values)",
        query=SecretsQuery,
        responses={200: list[ManagedSecret]},
    )
    def list_secrets(query: SecretsQuery) -> list[ManagedSecret]:
        return [s for s in views() if query.namespace in (None, s.namespace) and query.state in (None, s.state)]

    @api.get(
        "/secrets/<namespace>/<name>",
        summary="One annotated Secret",
        params={"namespace": str, "name": str},
        responses={200: ManagedSecret, 404: NotFound},
    )
    def get_secret(namespace: str, name: str) -> ManagedSecret:
        for item in views():
            if (item.namespace, item.name) == (namespace, name):
                return item
        raise NotFound(f"no annotated Secret {namespace}/{name}")

    @api.post(
        "/secrets/<namespace>/<name>/rotate",
        summary="Rotate now",
        description="Annotates the Secret with the request; the leader rotates the values this controller wrote "
        "(through the app's hook where one is set) on its next pass, keeping the old ones as <key>.previous. "
        "409 when there is nothing it may rotate (refused, invalid, or every value set by someone else).",
        params={"namespace": str, "name": str},
        responses={202: RotationRequested, 404: NotFound, 409: Conflict, 503: Unavailable},
    )
    def rotate(namespace: str, name: str) -> tuple[RotationRequested, int]:
        record = controller.secrets.get(f"{namespace}/{name}")
        if record is None or not ann.is_annotated(record.observed.annotations):
            raise NotFound(f"no annotated Secret {namespace}/{name}")
        view = describe(record.observed)
        if not view.rotatable:
            raise Conflict(f"{namespace}/{name} has no value this controller wrote ({view.state}); nothing to rotate")
        try:
            at = controller.request_rotation(namespace, name)
        except kubernetes.client.ApiException as exc:
            raise Unavailable(f"could not annotate the Secret: HTTP {exc.status} {exc.reason}") from None
        return RotationRequested(namespace=namespace, name=name, requested_at=at), 202

    @api.get(
        "/status",
        summary="Leader, counts, and Secrets holding an upstream default password",
        responses={200: StatusOut},
    )
    def status() -> StatusOut:
        items = views()
        return StatusOut(
            leader=controller.is_leader(),
            managed=sum(s.state in ("ok", "pending", "unfilled") for s in items),
            refused=sum(s.state == "refused" for s in items),
            errors=sum(s.state == "error" for s in items),
            passes=controller.passes,
            last_pass=_time(controller.last_pass),
            default_passwords=[DefaultFound(secret=s, key=k, app=a) for s, k, a in controller.defaults_found],
        )

    return api


def build_controller(
    settings: Settings,
    *,
    api_client: kubernetes.client.ApiClient | None = None,
    backoff: Backoff | None = None,
    **options: Any,
) -> Controller:
    return Controller(
        api_client or load_client(),
        namespace=settings.namespace,
        hooks=options.pop("hooks", None) or default_hooks(settings.hook_timeout_seconds),
        hook_retry=settings.hook_retry_seconds,
        run_audit=settings.audit,
        restart_workloads=settings.restart_workloads,
        lease=(settings.lease_namespace, settings.lease_name, settings.identity),
        debounce=settings.debounce_seconds,
        resync=settings.resync_seconds,
        backoff=backoff,
        backoff_max=settings.backoff_max_seconds,
        **options,
    )


def create_app(settings: Settings | None = None, **options: Any) -> Flask:
    """The app, with the controller started (``options`` go to :func:`build_controller`)."""
    settings = settings or load_settings(Settings)
    controller = build_controller(settings, **options)
    app = Flask("homelab_secrets")
    app.extensions["settings"] = settings
    app.extensions["homelab_secrets"] = controller
    make_api(controller).install(app)
    health = install_observability(app, "secrets")
    health.add("watches", controller.ready)
    controller.start()
    return app
