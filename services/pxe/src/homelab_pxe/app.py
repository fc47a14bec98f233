"""The pxe service's HTTP side (boot scripts, assets, iPXE binaries, Wake-on-LAN) and its background servers.

``create_app`` builds the Flask app only; ``start_servers`` starts the proxyDHCP thread and the TFTP listener
(whose worker processes report back to it) beside it. ``main`` calls both inside gunicorn's worker (the one process
that holds the metrics), so ``/metrics`` shows DHCP and TFTP counters too. Tests start whichever part they need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flask import Flask, Response, request, send_file
from pydantic import BaseModel, ConfigDict, Field

from homelab_common.openapi import Api, Text
from homelab_common.settings import SettingsError
from homelab_common.site import INITRD_ASSET, ISO_ASSET, KERNEL_ASSET
from homelab_common.trust import is_trusted
from homelab_common.web import InvalidInput, NotFound, Unauthorized, health, install_observability
from homelab_common.wol import mac_bytes, wake_on_lan
from homelab_pxe import bootscript, metrics
from homelab_pxe.autoinstall import AutoinstallClient, AutoinstallUnavailable, BootInfoSource, MachineUnknown
from homelab_pxe.dhcp_server import DhcpServer, Endpoints
from homelab_pxe.netinfo import Serving, detect
from homelab_pxe.proxy import ProxyConfig
from homelab_pxe.settings import Settings, load
from homelab_pxe.tftp import PathRefused, TftpService, resolve

log = logging.getLogger("homelab.pxe")
#: 12 hex digits, with ':', '-' or '.' anywhere between them (``52:54:00:..``, ``52-54-..``, ``5254.0012.3456``).
MAC_PATTERN = r"^[:.-]*([0-9A-Fa-f][:.-]*){12}$"
#: An install needs all three in ``<assets>/<arch>/`` (laid out by `task up`'s installer assets stage).
ASSETS = (KERNEL_ASSET, INITRD_ASSET, ISO_ASSET)


@dataclass(frozen=True)
class Runtime:
    """Settings plus what was detected from them: where we serve and the base URL clients use."""

    settings: Settings
    serving: Serving
    http_base: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        serving = detect(settings.interface, settings.server_ip, settings.lan)
        if settings.http_url is not None:
            base = str(settings.http_url).rstrip("/")
        else:
            base = f"http://{serving.ip}:{settings.http_port}"
        return cls(settings, serving, base)

    @property
    def proxy_config(self) -> ProxyConfig:
        s = self.settings
        return ProxyConfig(
            server_ip=self.serving.ip,
            http_base=self.http_base,
            bios=s.bootfile_bios,
            efi_ia32=s.bootfile_efi_ia32,
            efi_x64=s.bootfile_efi_x64,
            efi_arm64=s.bootfile_efi_arm64,
        )

    @property
    def wol_broadcast(self) -> str:
        return str(self.settings.wol_broadcast or self.serving.broadcast)


def normalise_mac(value: str) -> str:
    try:
        return ":".join(f"{b:02x}" for b in mac_bytes(value))
    except ValueError:
        raise InvalidInput(
            "not a MAC address", fields=[{"field": "query.mac", "message": f"not a MAC address: {value[:40]!r}"}]
        ) from None


class BootQuery(BaseModel):
    """What iPXE fills in: ``?mac=${mac}&uuid=${uuid}&arch=${buildarch}``."""

    mac: str = Field(max_length=64, pattern=MAC_PATTERN)
    uuid: str = Field(default="", max_length=64)
    arch: str = Field(default="", max_length=32)


class WakeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mac: str = Field(max_length=64, pattern=MAC_PATTERN, description="The machine's MAC address, any common notation")


class WakeResult(BaseModel):
    """The magic packet was sent."""

    mac: str
    broadcast: str
    port: int


def create_app(settings: Settings | None = None, *, boot_source: BootInfoSource | None = None) -> Flask:
    settings = settings or load()
    runtime = Runtime.from_settings(settings)
    source = boot_source or AutoinstallClient(str(settings.autoinstall_url), settings.autoinstall_timeout)
    app = Flask("homelab_pxe")
    app.extensions["settings"] = settings
    app.extensions["homelab_pxe.runtime"] = runtime
    api = Api("pxe", "1.0.0", description="PXE boot scripts, boot assets and Wake-on-LAN for the homelab's machines")

    @api.get(
        "/boot.ipxe",
        summary="The iPXE script for one machine",
        description="Install, boot from disk, ignore (unknown MAC) or wait and retry (autoinstall unreachable).",
        query=BootQuery,
        responses={200: Text("text/plain", "An iPXE script")},
        tags=["boot"],
    )
    def boot_script(query: BootQuery) -> str:
        mac = normalise_mac(query.mac)
        script = decide(mac)
        metrics.BOOT_SCRIPTS.labels(script.action).inc()
        log.info("boot script", extra={"mac": mac, "action": script.action, "uuid": query.uuid, "arch": query.arch})
        return script.text

    def decide(mac: str) -> bootscript.Script:
        try:
            info = source.boot_info(mac)
        except MachineUnknown:
            if settings.unknown_action == "local":
                return bootscript.local(f"{mac} is not in the inventory")
            return bootscript.ignore(mac)
        except AutoinstallUnavailable as exc:
            log.warning("cannot ask autoinstall; telling the machine to retry", extra={"mac": mac, "error": str(exc)})
            return bootscript.retry(runtime.http_base, settings.retry_seconds, "install service unavailable")
        if info.action == "local":
            return bootscript.local(f"{info.machine} is installed")
        if info.action == "wait":
            return bootscript.retry(
                runtime.http_base, settings.retry_seconds, f"{info.machine} is not armed for install"
            )
        if info.seed_url is None:
            log.error("autoinstall said install without a seed_url", extra={"mac": mac, "machine": info.machine})
            return bootscript.retry(runtime.http_base, settings.retry_seconds, "install service answer incomplete")
        missing = [name for name in ASSETS if not (settings.assets_dir / info.arch / name).is_file()]
        if missing:  # booting the kernel anyway would fail later, inside casper, where nobody sees why
            log.error(
                "installer assets missing: run `homelab-bootstrap assets` on the controller",
                extra={"mac": mac, "machine": info.machine, "missing": [f"{info.arch}/{n}" for n in missing]},
            )
            return bootscript.retry(runtime.http_base, settings.retry_seconds, f"no {info.arch} installer here yet")
        return bootscript.install(info, runtime.http_base, settings.kernel_args)

    @api.get(
        "/assets/<path:name>",
        summary="A boot asset (kernel, initrd, the installer ISO) from the assets directory",
        description="Byte ranges (``Range: bytes=...``) are answered with 206, so downloads can resume.",
        responses={200: Text("application/octet-stream", "The file"), 404: NotFound},
        tags=["boot"],
    )
    def asset(name: str) -> Response:
        return _serve(settings.assets_dir, name)

    @api.get(
        "/ipxe/<name>",
        summary="An iPXE binary from the TFTP root (for UEFI HTTP boot)",
        responses={200: Text("application/octet-stream", "The file"), 404: NotFound},
        tags=["boot"],
    )
    def ipxe_binary(name: str) -> Response:
        return _serve(settings.tftp_root, name)

    @api.post(
        "/api/v1/wake",
        summary="Send a Wake-on-LAN magic packet to a machine",
        description="Accepted from the same sources as autoinstall's management calls: this host itself and "
        "HOMELAB_PXE_TRUSTED_NETWORKS (never the LAN).",
        body=WakeRequest,
        responses={202: WakeResult, 403: Unauthorized},
        tags=["machines"],
    )
    def wake(body: WakeRequest) -> tuple[WakeResult, int]:
        if not is_trusted(request.remote_addr, settings.trusted_networks):
            metrics.WAKES_REFUSED.inc()
            log.warning("wake refused: untrusted source", extra={"remote": request.remote_addr})
            raise Unauthorized("wake requests are accepted only from trusted networks (HOMELAB_PXE_TRUSTED_NETWORKS)")
        try:
            mac = ":".join(f"{b:02x}" for b in mac_bytes(body.mac))
        except ValueError:
            raise InvalidInput(
                "not a MAC address", fields=[{"field": "body.mac", "message": "not a MAC address"}]
            ) from None
        wake_on_lan(mac, runtime.wol_broadcast, settings.wol_port)
        metrics.WAKES.inc()
        log.info("wake-on-lan sent", extra={"mac": mac, "broadcast": runtime.wol_broadcast})
        return WakeResult(mac=mac, broadcast=runtime.wol_broadcast, port=settings.wol_port), 202

    api.install(app)
    install_observability(app, "pxe")
    return app


def _serve(root: Path, name: str) -> Response:
    try:
        path = resolve(root, name)
    except PathRefused:
        raise NotFound(f"no such file: {name[:100]}") from None
    return send_file(path, mimetype="application/octet-stream", conditional=True, max_age=0)


Servers = dict[Literal["dhcp", "tftp"], DhcpServer | TftpService]


def start_servers(app: Flask) -> Servers:
    """Start proxyDHCP and TFTP as the settings say; register readiness; a bind error raises here (fail fast)."""
    runtime: Runtime = app.extensions["homelab_pxe.runtime"]
    s = runtime.settings
    servers: Servers = {}
    if s.dhcp_enabled:
        endpoints = Endpoints(
            bind=s.bind_address,
            dhcp_port=s.dhcp_port,
            proxy_port=s.proxy_port,
            reply_address=s.reply_address,
            client_port=s.client_port,
            interface=runtime.serving.interface,
        )
        dhcp = DhcpServer(runtime.proxy_config, endpoints)
        dhcp.start()
        servers["dhcp"] = dhcp
        health(app).add("dhcp", lambda: None if dhcp.alive else "proxyDHCP loop not running")
    if s.tftp_enabled:
        if not s.tftp_root.is_dir():
            raise SettingsError(f"pxe: invalid settings: HOMELAB_PXE_TFTP_ROOT={s.tftp_root}: not a directory")
        wanted = {s.bootfile_bios, s.bootfile_efi_ia32, s.bootfile_efi_x64}
        for name in sorted(wanted | ({s.bootfile_efi_arm64} if s.arm64_machines else set())):
            try:
                resolve(s.tftp_root, name)
            except PathRefused as refused:  # e.g. Debian's /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi: copy with cp -L
                log.warning(
                    "boot file cannot be served from the TFTP root",
                    extra={"file": name, "root": str(s.tftp_root), "reason": refused.reason},
                )
        tftp = TftpService(s.tftp_root, str(s.bind_address), s.tftp_port, workers=s.tftp_workers)
        tftp.start()
        servers["tftp"] = tftp
        health(app).add("tftp", lambda: None if tftp.running else "TFTP server not running")
    app.extensions["homelab_pxe.servers"] = servers
    return servers
