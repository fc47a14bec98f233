"""HTTP: the management API (/api/v1), pxe's boot decision, and the installer's seed endpoints."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import kubernetes.client
from flask import Flask, Response, current_app, request, send_from_directory
from pydantic import AfterValidator, BaseModel, Field, model_serializer
from werkzeug.routing import PathConverter

from homelab_autoinstall.alarms import alarm_sinks
from homelab_autoinstall.core import SEED_FILES, NotArmable, Refused
from homelab_autoinstall.inventory import Inventory
from homelab_autoinstall.service import Provisioner, UnknownMachine
from homelab_autoinstall.settings import Settings
from homelab_autoinstall.store import Event, Record, Store
from homelab_autoinstall.userdata import ImageArchive, InstallOptions, RegistryMirror
from homelab_common.openapi import Api, Text
from homelab_common.settings import load_settings
from homelab_common.site import Machine, normalise_mac
from homelab_common.trust import is_trusted
from homelab_common.web import (
    Conflict,
    NotFound,
    Unauthorized,
    Unavailable,
    health,
    install_observability,
    redact_paths,
)

log = logging.getLogger("homelab.autoinstall")
T = TypeVar("T")
#: A MAC in any common notation (``52:54:00:12:34:56``, ``52-54-…``, ``5254.0012.3456``, ``525400123456``).
_HEX2 = "[0-9A-Fa-f]{2}"
MAC_PATTERN = (
    f"^(?:{_HEX2}(?::{_HEX2}){{5}}|{_HEX2}(?:-{_HEX2}){{5}}|[0-9A-Fa-f]{{12}}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})$"
)
Mac = Annotated[str, Field(pattern=MAC_PATTERN), AfterValidator(normalise_mac)]
MAX_BODY = 1024 * 1024


class MachineOut(BaseModel):
    """A machine from the inventory with its install state."""

    name: str
    mac: str
    ip: str
    role: Literal["server", "agent"]
    arch: Literal["amd64", "arm64"]
    disk: str
    state: Literal["pending", "installing", "installed"]
    generation: int = Field(description="Install number: 1, then +1 on every reinstall")
    updated_at: str
    armed_until: str | None = Field(
        default=None, description="End of the armed install window (UTC, ISO 8601); null when not armed"
    )


class EventOut(BaseModel):
    """A state change or installer progress event."""

    id: int
    ts: str
    mac: str
    machine: str
    kind: Literal["registered", "state", "reinstall", "installer", "armed", "alarm"]
    from_state: str | None
    to_state: str | None
    message: str
    detail: dict[str, str]


class EventsQuery(BaseModel):
    since: int = Field(default=0, ge=0, le=2**63 - 1, description="Return events with an id greater than this")
    limit: int = Field(default=100, ge=1, le=1000)


class ArmQuery(BaseModel):
    seconds: int | None = Field(
        default=None, ge=60, le=86400, description="How long the window stays open (default: the service setting)"
    )


class BootDecision(BaseModel):
    """What a PXE-booting machine should do; ``seed_url`` only when it should install (an armed window)."""

    action: Literal["install", "local", "wait"]
    machine: str
    arch: Literal["amd64", "arm64"]
    seed_url: str | None = None

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class WakeResult(BaseModel):
    """A magic packet was sent (whether the machine wakes depends on its firmware settings)."""

    machine: str
    mac: str
    broadcast: str
    port: int


class Accepted(BaseModel):
    status: Literal["ok"] = "ok"


def machine_out(machine: Machine, record: Record) -> MachineOut:
    armed = None
    if record.armed():
        assert record.armed_until is not None
        armed = datetime.fromtimestamp(record.armed_until, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return MachineOut(
        name=machine.name, mac=machine.mac, ip=str(machine.ip), role=machine.role, arch=machine.arch,
        disk=machine.disk, state=record.state.value, generation=record.generation, updated_at=record.updated_at,
        armed_until=armed,
    )  # fmt: skip


def event_out(event: Event) -> EventOut:
    return EventOut.model_validate(
        {**event.__dict__, "detail": {str(k): str(v) for k, v in event.detail.items()}}, strict=False
    )


def provisioner() -> Provisioner:
    p: Provisioner = current_app.extensions["autoinstall"]
    return p


def public_url() -> str:
    settings: Settings = current_app.extensions["settings"]
    if settings.public_url:
        return settings.public_url
    host = urlsplit(request.host_url).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") and not current_app.extensions.get("autoinstall.warned_loopback"):
        current_app.extensions["autoinstall.warned_loopback"] = True
        log.warning(
            "seed URLs point at a loopback address, which installers cannot reach: set HOMELAB_AUTOINSTALL_PUBLIC_URL",
            extra={"host": request.host},
        )
    return request.host_url.rstrip("/")


SEED_ENDPOINTS = (*SEED_FILES, "installed", "events")


class OtherSeedPath(PathConverter):
    """Any path under /seed/ except ``<mac>/<token>/<endpoint>``: those go to their own routes (or get a 405)."""

    regex = r"(?!(?:[^/]+/){2}(?:" + "|".join(SEED_ENDPOINTS) + r")$)[^/].*?"


MEDIA = {"user-data": "text/cloud-config", "vendor-data": "text/cloud-config"}


def build_api() -> Api:
    api = Api("autoinstall", "1.0.0", "Install state, pxe's boot decision and the installers' per-machine seed files")

    @api.get("/api/v1/machines", summary="Every machine in the inventory with its install state",
             responses={200: list[MachineOut]}, tags=["machines"])  # fmt: skip
    def list_machines() -> list[MachineOut]:
        return [machine_out(m, r) for m, r in provisioner().machines()]

    @api.get("/api/v1/machines/<mac>", summary="One machine", params={"mac": Mac},
             responses={200: MachineOut, 404: NotFound}, tags=["machines"])  # fmt: skip
    def get_machine(mac: str) -> MachineOut:
        return machine_out(*_known(lambda: provisioner().machine(mac), mac))

    @api.post("/api/v1/machines/<mac>/reinstall", summary="Install again: back to pending with a fresh seed token",
              params={"mac": Mac}, responses={200: MachineOut, 403: Unauthorized, 404: NotFound},
              tags=["machines"])  # fmt: skip
    def reinstall(mac: str) -> MachineOut:
        _require_trusted("reinstall")
        return machine_out(*_known(lambda: provisioner().reinstall(mac), mac))

    @api.post("/api/v1/machines/<mac>/arm", summary="Open the machine's install window (a fresh one-shot seed URL)",
              description="Until the window ends or the installer fetches user-data, pxe's boot script for this "
              "machine carries its seed URL; without a window a pending machine is told to wait. 409 when it is "
              "installed (reinstall first).", params={"mac": Mac}, query=ArmQuery,
              responses={200: MachineOut, 403: Unauthorized, 404: NotFound, 409: Conflict},
              tags=["machines"])  # fmt: skip
    def arm(mac: str, query: ArmQuery) -> MachineOut:
        _require_trusted("arm")
        settings: Settings = current_app.extensions["settings"]
        seconds = query.seconds or settings.arm_seconds
        try:
            return machine_out(*_known(lambda: provisioner().arm(mac, seconds), mac))
        except NotArmable:
            raise Conflict(f"{mac} is installed: POST /api/v1/machines/{mac}/reinstall first") from None

    @api.post("/api/v1/machines/<mac>/wake", summary="Send the machine a Wake-on-LAN magic packet",
              params={"mac": Mac}, responses={202: WakeResult, 403: Unauthorized, 404: NotFound, 503: Unavailable},
              tags=["machines"])  # fmt: skip
    def wake(mac: str) -> tuple[WakeResult, int]:
        _require_trusted("wake")
        settings: Settings = current_app.extensions["settings"]
        broadcast = str(settings.wol_broadcast) if settings.wol_broadcast else None
        try:
            machine, target = _known(lambda: provisioner().wake(mac, broadcast, settings.wol_port), mac)
        except OSError as exc:
            log.warning("wake-on-lan failed", extra={"mac": mac, "error": str(exc)})
            raise Unavailable(f"could not send the Wake-on-LAN packet: {exc.strerror or exc}") from None
        return WakeResult(machine=machine.name, mac=machine.mac, broadcast=target, port=settings.wol_port), 202

    @api.get("/api/v1/events", summary="State changes and installer events after an id, oldest first",
             query=EventsQuery, responses={200: list[EventOut]}, tags=["events"])  # fmt: skip
    def list_events(query: EventsQuery) -> list[EventOut]:
        return [event_out(e) for e in provisioner().events(query.since, query.limit)]

    @api.get("/api/v1/boot/<mac>", summary="pxe's question: install (with the seed URL) or boot the local disk",
             params={"mac": Mac}, responses={200: BootDecision, 403: Unauthorized, 404: NotFound},
             tags=["boot"])  # fmt: skip
    def boot_decision(mac: str) -> BootDecision:
        _require_trusted("boot")
        boot = _known(lambda: provisioner().boot(mac, public_url()), mac)
        return BootDecision(action=boot.action, machine=boot.machine.name, arch=boot.machine.arch,
                            seed_url=boot.seed_url)  # fmt: skip

    for file in SEED_FILES:
        _seed_route(api, file)

    @api.post("/seed/<mac>/<token>/installed", summary="The installer's last late-command: the install is complete",
              description="Form body `nonce=<the nonce in the user-data this installer fetched>`.",
              responses={200: Accepted, 403: Unauthorized}, tags=["seed"])  # fmt: skip
    def seed_installed(mac: str, token: str) -> Accepted:
        nonce = request.form.get("nonce", "")[:100]
        _refusing(lambda: provisioner().installed(mac, token, nonce, request.remote_addr))
        return Accepted()

    @api.post("/seed/<mac>/<token>/events", summary="subiquity's reporting webhook (JSON progress events)",
              body=dict[str, Any], responses={200: Accepted, 403: Unauthorized}, tags=["seed"])  # fmt: skip
    def seed_events(mac: str, token: str, body: dict[str, Any]) -> Accepted:
        _refusing(lambda: provisioner().installer_event(mac, token, body, request.remote_addr))
        return Accepted()

    return api


def _seed_route(api: Api, file: str) -> None:
    def view(mac: str, token: str) -> tuple[str, int]:
        text = _refusing(lambda: provisioner().seed_file(mac, token, file, request.remote_addr, public_url()))
        return text, 200

    view.__name__ = "seed_" + file.replace("-", "_")
    api.get(f"/seed/<mac>/<token>/{file}", summary=f"The machine's {file} (NoCloud seed file)",
            responses={200: Text(MEDIA.get(file, "text/yaml")), 403: Unauthorized}, tags=["seed"])(view)  # fmt: skip


def _require_trusted(what: str) -> None:
    settings: Settings = current_app.extensions["settings"]
    if not is_trusted(request.remote_addr, settings.trusted_networks):
        provisioner().refused(Refused("untrusted-source"), None, "", what, request.remote_addr)
        raise Unauthorized(
            f"{what} requests are accepted only from trusted networks (HOMELAB_AUTOINSTALL_TRUSTED_NETWORKS)"
        )


def _known(call: Callable[[], T], mac: str) -> T:
    try:
        return call()
    except UnknownMachine:
        raise NotFound(f"no machine with MAC {mac} in the inventory") from None


def _refusing(call: Callable[[], T]) -> T:
    try:
        return call()
    except Refused:
        raise Unauthorized("refused") from None


def read_images(folder: Path) -> tuple[ImageArchive, ...]:
    """The archives of `task images`' index.json in ``folder`` (the settings checked that each is there)."""
    entries = json.loads((folder / "index.json").read_text(encoding="utf-8"))["images"]
    return tuple(ImageArchive(archive=e["archive"], sha256=e["sha256"]) for e in entries)


def read_registry(settings: Settings) -> RegistryMirror | None:
    """The Day 2 pull endpoint and the nodes' credential (the settings checked the file)."""
    if settings.registry_url is None or settings.registry_credential_file is None:
        return None
    data = json.loads(settings.registry_credential_file.read_text(encoding="utf-8"))
    return RegistryMirror(url=settings.registry_url, username=str(data["username"]), password=str(data["password"]))


def create_app(settings: Settings | None = None, *, kube_client: kubernetes.client.ApiClient | None = None) -> Flask:
    settings = settings or load_settings(Settings)
    app = Flask("homelab_autoinstall")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["settings"] = settings
    inventory = Inventory(settings.site_file)
    images = read_images(settings.images_dir) if settings.images_dir else ()
    options = InstallOptions(
        username=settings.username,
        k3s_install_url=settings.k3s_install_url,
        packages=list(settings.packages),
        images=images,
        registry=read_registry(settings),
    )
    store = Store(settings.state_file)
    app.extensions["autoinstall"] = Provisioner(
        inventory,
        store,
        options,
        check_source_ip=settings.check_source_ip,
        alarm_sinks=alarm_sinks(settings, kube_client),
    )
    build_api().install(app)

    app.url_map.converters["other_seed_path"] = OtherSeedPath

    @app.route("/seed/<other_seed_path:seed_token_path>", methods=["GET", "POST"], provide_automatic_options=False)
    def seed_unknown(seed_token_path: str) -> Response:
        """Any other seed path: refused like a bad token (the path holds a token: never logged)."""
        provisioner().refused(Refused("unknown-file"), None, "", request.method, request.remote_addr)
        raise Unauthorized("refused")

    archives = {image.archive for image in images}

    @app.get("/images/<name>")
    def image_archive(name: str) -> Response:
        """An OCI archive of the index, for the installers' late-commands (public: no secrets in images)."""
        if name not in archives or settings.images_dir is None:
            raise NotFound(f"no image archive {name!r}")
        return send_from_directory(settings.images_dir, name, mimetype="application/x-tar")

    install_observability(app, "autoinstall")
    redact_paths(app, r"^/seed/[^/]+/(?P<secret>[^/]+)")
    health(app).add("site-file", inventory.problem)
    return app
