"""The default-password audit: is any Secret value in the cluster a password an upstream chart ships?

The list below is curated from the charts and apps this project deploys (their documented defaults, at the
versions gitops/ pins). Values are compared by SHA-256 only: the informer keeps a digest of each short value, never
the value (see :func:`digests`), and a match is reported by Secret and key — the value is never logged or shown.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Default:
    app: str
    where: str  # which upstream value or document ships it


#: Passwords the upstream charts and apps we ship set when nobody overrides them.
UPSTREAM_DEFAULTS: dict[str, Default] = {
    "prom-operator": Default("grafana", "kube-prometheus-stack values grafana.adminPassword"),
    "admin": Default("grafana", "Grafana's built-in admin/admin (security.admin_password)"),
    "r8sA8CPHD9!bt6d": Default("gitea", "gitea chart values gitea.admin.password"),
    "changeme1": Default("gitea", "gitea chart postgresql-ha postgresPassword"),
    "changeme2": Default("gitea", "gitea chart postgresql-ha repmgrPassword"),
    "changeme3": Default("gitea", "gitea chart postgresql-ha pgpool adminPassword"),
    "changeme4": Default("gitea", "gitea chart postgresql-ha password"),
    "gitea": Default("gitea", "gitea chart postgresql auth password"),
    "password": Default("any", "the most common placeholder"),
    "changeme": Default("any", "the most common placeholder"),
}
#: Longer values cannot be any of the defaults: they are not digested at all.
MAX_LENGTH = max(len(p) for p in UPSTREAM_DEFAULTS)
#: Keys that hold a user name, not a password ("admin" is Grafana's default password and its default user name).
NAME_KEY = re.compile(r"(?i)(user|login|name|email)")


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


KNOWN: dict[str, Default] = {_digest(p.encode()): d for p, d in UPSTREAM_DEFAULTS.items()}


def digests(data: dict[str, bytes]) -> dict[str, str]:
    """key → SHA-256 of the value, for values short enough to be a default (the rest cannot match)."""
    return {
        k: _digest(v.strip()) for k, v in data.items() if 0 < len(v.strip()) <= MAX_LENGTH and not NAME_KEY.search(k)
    }


def findings(hashes: dict[str, str]) -> list[tuple[str, Default]]:
    """The keys whose value is an upstream default, with where that default comes from."""
    return [(key, KNOWN[h]) for key, h in sorted(hashes.items()) if h in KNOWN]
