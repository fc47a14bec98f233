"""The homepage's settings: environment variables ``HOMELAB_HOMEPAGE_<FIELD>``, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from homelab_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything the homepage can be told; defaults suit one instance in a homelab cluster."""

    model_config = SettingsConfigDict(env_prefix="HOMELAB_HOMEPAGE_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "homepage"

    #: The page's title.
    title: str = Field(default="Homelab", min_length=1, max_length=80)
    #: Discover apps from the cluster's Ingresses (off: only the static list).
    kubernetes: bool = True
    #: Kubeconfig path when running outside a pod; in a pod the service account is used.
    kubeconfig: str | None = None
    #: Full relist of every watched kind this often, in seconds (the watch keeps the cache current between).
    resync_seconds: float = Field(default=300.0, gt=0)
    #: This instance's name for ``gethomepage.dev/instance`` / ``hajimari.io/instance`` filtering.
    instance_name: str = ""
    #: A gethomepage-style services.yaml for things outside the cluster (router, NAS, bookmarks).
    static_apps_file: Path | None = None
    #: Group order: lower weight first (``{"Infrastructure": -10}``); unnamed groups use their apps' lowest weight.
    group_weights: dict[str, int] = Field(default_factory=dict)
    #: How often each ``siteMonitor`` URL is probed, in seconds.
    probe_interval_seconds: float = Field(default=30.0, gt=0)
    #: Per-probe timeout (connect and read), in seconds.
    probe_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Probes in flight at once.
    probe_concurrency: int = Field(default=8, ge=1, le=64)
    #: Verify TLS certificates of probed URLs (turn off for self-signed homelab certificates).
    probe_verify_tls: bool = True
    #: How often every app's href is checked for reachability (a diagnostic, not a status); 0 turns it off.
    href_check_interval_seconds: float = Field(default=300.0, ge=0)
    #: The browser refreshes the cards this often, in seconds (0: never; the page then needs a reload).
    refresh_seconds: int = Field(default=10, ge=0, le=3600)
    #: Coalesce bursts of cluster changes for this long before rebuilding the page, in seconds.
    rebuild_debounce_seconds: float = Field(default=0.05, ge=0, le=5)
    #: Alert delivery: the ntfy server (self-hosted or https://ntfy.sh) Alertmanager's webhook is published to;
    #: unset, the route /api/v1/alerts/ntfy does not exist. Given by the optional Secret homepage-ntfy in the chart.
    ntfy_url: AnyHttpUrl | None = None
    #: The ntfy topic (with a public server the topic name is the password: make it long and random).
    ntfy_topic: str = Field(default="homelab-alerts", pattern=r"^[-_A-Za-z0-9]{1,64}$")
    #: An ntfy access token (tk_...) for a protected topic; best as a secret file (HOMELAB_HOMEPAGE_NTFY_TOKEN).
    ntfy_token: SecretStr | None = None
