"""The backup service's settings: ``HOMELAB_BACKUP_*`` environment variables (lists and mappings as JSON).

The repositories (``HOMELAB_BACKUP_REPOSITORIES``, with their passwords and backend credentials) come from the
Secret that `task up` writes from the site file's ``backup.repositories``; the controller and every runner Job
read the same Secret key. Nothing here is logged: passwords are ``SecretStr``.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from homelab_backup.restic import Repository
from homelab_backup.schedule import Cron, ScheduleError
from homelab_common.settings import ServiceSettings

NAME = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"


class RepositorySetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    url: str = Field(min_length=1, max_length=500)
    offsite: bool = False
    init: bool = False
    password: SecretStr
    env: dict[str, SecretStr] = Field(default_factory=dict)
    options: dict[str, str] = Field(default_factory=dict)

    def repository(self) -> Repository:
        return Repository(
            self.name,
            self.url,
            self.password.get_secret_value(),
            {k: v.get_secret_value() for k, v in self.env.items()},
            self.offsite,
            self.init,
            dict(self.options),
        )


class Keep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    last: int = Field(default=0, ge=0)
    hourly: int = Field(default=0, ge=0)
    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=6, ge=0)
    yearly: int = Field(default=0, ge=0)


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMELAB_BACKUP_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "backup"

    repositories: list[RepositorySetting] = Field(default_factory=list)
    #: The runner's repository (``homelab-backup run ... --repository`` overrides it).
    repository: str = ""
    schedule: str = "@daily"
    jitter_minutes: int = Field(default=120, ge=0, le=1440)
    keep: Keep = Keep()
    check_schedule: str = "@weekly"
    check_subset: str = Field(default="5%", pattern=r"^(\d{1,2}(\.\d+)?%|100%|\d+/\d+)$")
    drill_schedule: str = "@weekly"

    restic: str = "restic"
    timeout_seconds: float = Field(default=6 * 3600.0, gt=0)
    stale_lock_seconds: float = Field(default=3600.0, ge=0)
    #: Where the runner writes its JSON report for the controller (the container's termination message).
    report_file: str = "/dev/termination-log"
    scratch_dir: str = "/scratch"

    # the Jobs
    image: str = "homelab/backup:latest"
    #: The Secret (key repositories.json) the Jobs read; copied into each namespace with volumes to back up.
    secret: str = "homelab-backup-repositories"  # noqa: S105 (the Secret's name)
    #: The namespace the controller, its Secret, and the check and drill Jobs live in.
    namespace: str = "backup"
    max_running_jobs: int = Field(default=4, ge=1, le=100)
    #: Dump Jobs (k8up.io/backupcommand) run as this service account; the controller binds it to the ClusterRole
    #: ``exec_cluster_role`` (pods list, pods/exec) with a RoleBinding only in namespaces with an annotated pod.
    exec_service_account: str = "backup-exec"
    exec_cluster_role: str = "backup-exec"
    #: Back up k3s's datastore: a Job per server node reads its etcd snapshots and server token (hostPath).
    k3s: bool = True
    k3s_snapshot_dir: str = "/var/lib/rancher/k3s/server/db/snapshots"
    k3s_token_file: str = "/var/lib/rancher/k3s/server/token"  # noqa: S105 (a path)

    # the loop and Kubernetes
    resync_seconds: float = Field(default=60.0, ge=1, le=86400)
    kubernetes: bool = True
    lease_name: str = "homelab-backup"
    identity: str = Field(default_factory=socket.gethostname)

    @field_validator("schedule", "check_schedule", "drill_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            Cron.parse(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        names = [r.name for r in self.repositories]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"repository names used twice: {', '.join(twice)}")
        return self

    def repository_named(self, name: str) -> Repository:
        for item in self.repositories:
            if item.name == name:
                return item.repository()
        known = ", ".join(r.name for r in self.repositories) or "none"
        raise KeyError(f"no repository {name!r} (known: {known})")

    def policy_problems(self) -> list[str]:
        """Where the repositories fall short of 3-2-1 (at least 2 copies, at least 1 offsite)."""
        problems = []
        if len(self.repositories) < 2:
            problems.append(f"{len(self.repositories)} repository(ies): 3-2-1 needs at least 2")
        if not any(r.offsite for r in self.repositories):
            problems.append("no offsite repository: 3-2-1 needs one")
        return problems
