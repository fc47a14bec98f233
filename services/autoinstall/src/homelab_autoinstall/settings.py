"""The service's settings: ``HOMELAB_AUTOINSTALL_*`` environment variables (documented in the README)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from homelab_common.settings import ServiceSettings

DEFAULT_PACKAGES = ["curl", "unattended-upgrades", "open-iscsi", "nfs-common"]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_AUTOINSTALL_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "autoinstall"

    #: The site file (YAML) with the machines; re-read when it changes.
    site_file: Path
    #: Directory holding the SQLite state file ``autoinstall.sqlite3``; must be persistent.
    state_dir: Path = Path("/var/lib/homelab-autoinstall")
    #: Base URL the installers reach this service at (``http://10.77.0.2:8081``), used in seed URLs. Unset: the
    #: scheme and host of the boot-decision request itself (right only when pxe calls us by the LAN address).
    public_url: str | None = None
    #: Serve seed files only to requests from the machine's own static IP. Off by default: the installer fetches
    #: its config while it still has the DHCP address the home router gave it.
    check_source_ip: bool = False
    #: Networks allowed to ask for boot decisions (they contain seed URLs) and to request reinstalls, as a JSON
    #: list of CIDRs. Empty (the default): only this host itself (loopback and its own addresses), where pxe runs.
    #: Listing machines and events (no secrets) is open to all.
    trusted_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    #: How long an install window stays open when armed without a duration (seconds): from `task up` arming the
    #: machine to its installer fetching user-data (power-on, firmware, PXE, kernel and initrd download).
    arm_seconds: int = Field(default=1800, ge=60, le=86400)
    #: In-cluster: the namespace and pod of this service, so alarms (a seed fetched twice) also become Kubernetes
    #: Events on the pod. Unset (outside a cluster): alarms are logs, metrics and API events only.
    events_namespace: str | None = None
    pod_name: str | None = None
    #: Where Wake-on-LAN magic packets go. Unset: the directed broadcast address of the site's lan.subnet.
    wol_broadcast: IPv4Address | None = None
    #: The UDP port of Wake-on-LAN packets (9, "discard", is the convention; some NICs listen on 7).
    wol_port: int = Field(default=9, ge=1, le=65535)
    #: The admin user created on every machine (SSH key login only, passwordless sudo).
    username: str = Field(default="homelab", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    #: Where the installed system fetches the k3s install script (a mirror of get.k3s.io for restricted networks).
    k3s_install_url: str = Field(default="https://get.k3s.io", pattern=r"^https?://[^\s'\"]+$")
    #: Extra Debian packages installed on every machine.
    packages: list[str] = Field(default_factory=lambda: list(DEFAULT_PACKAGES))
    #: Day 0 images: the folder of `task images` (its index.json and OCI archives). Served under /images/, and every
    #: install puts each archive into k3s's image import folder, checked by sha256. Unset: none.
    images_dir: Path | None = None
    #: Day 2 images: the read-only pull endpoint every node's k3s fetches ``homelab.internal/*`` images from
    #: (registries.yaml), e.g. ``https://registry-pull.home.arpa``. Unset: no registries.yaml (Day 0 images only).
    registry_url: str | None = Field(default=None, pattern=r"^https?://[^\s/'\"]+$")
    #: The nodes' pull credential for ``registry_url``: the JSON file ``task up`` mints (``username``,
    #: ``password``; homelab_bootstrap.registry). Required with ``registry_url``.
    registry_credential_file: Path | None = None

    @field_validator("wol_broadcast", "events_namespace", "pod_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http(s) URL such as http://10.77.0.2:8081")
        return value.rstrip("/")

    @field_validator("images_dir", mode="before")
    @classmethod
    def _images_dir(cls, value: object) -> object:
        if value in (None, ""):
            return None
        index = Path(str(value)) / "index.json"
        try:
            entries = json.loads(index.read_text(encoding="utf-8"))["images"]
            missing = [
                e["archive"] for e in entries if "/" in e["archive"] or not (index.parent / e["archive"]).is_file()
            ]
            _ = [e["sha256"] for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"no readable index.json in {value} ({exc}): run ./task images, or leave this unset"
            ) from None
        if missing:
            raise ValueError(f"archives missing from {value}: {', '.join(missing)}: run ./task images")
        return value

    @field_validator("registry_url", "registry_credential_file", mode="before")
    @classmethod
    def _registry_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("registry_credential_file")
    @classmethod
    def _registry_credential(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            data = json.loads(value.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
                raise ValueError("needs non-empty username and password")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{value}: not a readable credential file ({exc}): run ./task up, or unset it") from None
        return value

    @model_validator(mode="after")
    def _registry_pair(self) -> Settings:
        if (self.registry_url is None) != (self.registry_credential_file is None):
            raise ValueError("registry_url and registry_credential_file go together: set both or neither")
        return self

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or not all(c.isalnum() or c in "+-.:" for c in name):
                raise ValueError(f"{name!r} is not a Debian package name")
        return value

    @property
    def state_file(self) -> Path:
        return self.state_dir / "autoinstall.sqlite3"
