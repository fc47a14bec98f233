"""Settings from environment variables (and mounted secret files), validated once at start.

A service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``HOMELAB_<SERVICE>_``) and builds
it with :func:`load_settings`, which turns pydantic's error into one message naming the environment variable,
so a misconfigured pod fails fast with something a person can act on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRETS_DIR = "/run/secrets/homelab"


class SettingsError(Exception):
    """Configuration is invalid; the message names each bad environment variable."""


class ServiceSettings(BaseSettings):
    """Base of every service's settings: shared knobs plus the env/secret-file sources."""

    model_config = SettingsConfigDict(env_prefix="HOMELAB_", extra="ignore", frozen=True)
    #: Subclasses set this to the service's name; used in logs, metrics and error messages.
    service_name: ClassVar[str] = "homelab"

    log_level: str = "INFO"


S = TypeVar("S", bound=ServiceSettings)


def env_name(cls: type[ServiceSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``cls``."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment, secret files and ``overrides``; fail naming each bad variable.

    Secret files are read from ``$HOMELAB_SECRETS_DIR`` (default ``/run/secrets/homelab``) when it exists: a file
    named like the variable (``HOMELAB_DNS_TSIG_SECRET``) sets that field, so secrets never need to be in env.
    """
    secrets_dir = os.environ.get("HOMELAB_SECRETS_DIR", DEFAULT_SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides)
    if Path(secrets_dir).is_dir():
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            name = env_name(cls, loc[0]) if loc else cls.__name__
            where = name + "".join(f"[{part}]" for part in loc[1:])
            problems.append(f"{where}: {err['msg']}")
        raise SettingsError(f"{cls.service_name}: invalid settings: " + "; ".join(problems)) from None


def load_settings_or_exit(cls: type[S], **overrides: Any) -> S:
    """For a service's ``main()``: the settings, or every problem on stderr and exit status 2 before anything starts."""
    try:
        return load_settings(cls, **overrides)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
