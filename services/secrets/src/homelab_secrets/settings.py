"""The secrets controller's settings: ``HOMELAB_SECRETS_*`` environment variables."""

from __future__ import annotations

import socket
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from homelab_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_SECRETS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "secrets"

    #: Watch Secrets (and the workloads to restart) only in this namespace ("" = all).
    namespace: str = ""
    #: Compare every Secret value in the cluster with the upstream default passwords (hashed).
    audit: bool = True
    #: Bump the pod template of workloads that reload on a rotated Secret.
    restart_workloads: bool = True
    #: How long to wait before calling a failed rotation hook again.
    hook_retry_seconds: float = Field(default=300.0, ge=1, le=86400)
    hook_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    # the loop
    debounce_seconds: float = Field(default=0.2, ge=0, le=60)
    resync_seconds: float = Field(default=300.0, ge=1, le=86400)
    backoff_max_seconds: float = Field(default=300.0, ge=1, le=3600)

    # leader election: only the Lease holder writes
    lease_name: str = "homelab-secrets"
    lease_namespace: str = "default"
    identity: str = Field(default_factory=socket.gethostname)
