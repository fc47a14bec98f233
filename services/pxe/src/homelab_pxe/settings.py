"""The pxe service's settings: every knob is an environment variable ``HOMELAB_PXE_<FIELD>`` (see README)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AnyHttpUrl, Field, field_validator
from pydantic_settings import SettingsConfigDict

from homelab_common.settings import ServiceSettings, load_settings

_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_PXE_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "pxe"

    #: Serving interface; detected with pyroute2 when unset (the one on ``lan``, else the default route's).
    interface: str | None = None
    #: Our address on the LAN (option 54, siaddr, URLs); detected from the interface when unset.
    server_ip: IPv4Address | None = None
    #: The LAN to serve (e.g. 10.77.0.0/24); picks the interface that has an address in it.
    lan: IPv4Network | None = None

    #: The base URL PXE clients use for our HTTP side; default ``http://<server_ip>:<http_port>``.
    http_url: AnyHttpUrl | None = None
    #: The port our HTTP server listens on (gunicorn binds ``HOMELAB_HTTP_BIND``); used to build ``http_url``.
    http_port: int = Field(default=8080, ge=1, le=65535)

    autoinstall_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8081")
    autoinstall_timeout: float = Field(default=5.0, gt=0, le=60)
    #: What a machine not in the inventory is told: ``ignore`` (exit with a message) or ``local`` (boot its disk).
    unknown_action: Literal["ignore", "local"] = "ignore"
    #: Seconds an iPXE client waits before asking again when autoinstall is unreachable.
    retry_seconds: int = Field(default=10, ge=1, le=3600)
    #: Extra kernel arguments appended to every install command line (e.g. ``console=ttyS0``).
    kernel_args: str = ""

    assets_dir: Path = Path("/var/lib/homelab-pxe/assets")
    #: Not /usr/lib/ipxe itself: Debian's ipxe.efi there is a symlink to /boot/ipxe.efi, which leaves the root and
    #: is refused. Copy the binaries in with ``cp -L`` (see README).
    tftp_root: Path = Path("/var/lib/homelab-pxe/tftp")
    bootfile_bios: str = Field(default="undionly.kpxe", pattern=_FILE_NAME)
    bootfile_efi_ia32: str = Field(default="ipxe.efi", pattern=_FILE_NAME)
    bootfile_efi_x64: str = Field(default="ipxe.efi", pattern=_FILE_NAME)
    bootfile_efi_arm64: str = Field(default="snp.efi", pattern=_FILE_NAME)
    #: Whether arm64 machines boot from here. Debian ships no arm64 iPXE, so its boot file is often absent: the
    #: start-up check warns about it only when this is true (`task up` sets it from the inventory's ``arch``).
    arm64_machines: bool = True

    dhcp_enabled: bool = True
    tftp_enabled: bool = True
    #: Where the DHCP and TFTP sockets bind; 0.0.0.0 is needed to receive broadcasts. Port 0 = any free port (tests).
    bind_address: IPv4Address = IPv4Address("0.0.0.0")
    dhcp_port: int = Field(default=67, ge=0, le=65535)
    proxy_port: int = Field(default=4011, ge=0, le=65535)
    tftp_port: int = Field(default=69, ge=0, le=65535)
    #: TFTP worker processes: transfers are spread over them (one Python loop for 20 machines at once was slow).
    tftp_workers: int = Field(default=2, ge=1, le=32)
    #: Where OFFERs to port-67 requests go (clients have no address yet), and the client port.
    reply_address: IPv4Address = IPv4Address("255.255.255.255")
    client_port: int = Field(default=68, ge=1, le=65535)

    #: Who may ask for Wake-on-LAN besides this host itself (JSON list of CIDRs): the same rule as autoinstall's
    #: HOMELAB_AUTOINSTALL_TRUSTED_NETWORKS. Never the LAN: anyone on it can take its addresses.
    trusted_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    #: Wake-on-LAN target; default: the directed broadcast of the serving LAN.
    wol_broadcast: IPv4Address | None = None
    wol_port: int = Field(default=9, ge=1, le=65535)

    @field_validator("interface", "server_ip", "lan", "http_url", "wol_broadcast", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``HOMELAB_PXE_LAN=""`` (e.g. a chart default) means "detect", not an invalid network."""
        return None if value == "" else value

    @field_validator("kernel_args")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n$"):
            raise ValueError("must be one line without '$' (it goes into an iPXE script)")
        return value


def load() -> Settings:
    return load_settings(Settings)
