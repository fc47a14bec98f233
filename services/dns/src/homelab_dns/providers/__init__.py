"""Where records are written: one small interface, so a new provider (Cloudflare, Pi-hole) needs no other change.

The reconciler reads ``records()`` (every record in the provider's zones, ownership TXT records included), plans
against them, and hands the plan to ``apply``. A provider raises :class:`ProviderError` for anything that went
wrong on the other side; the reconciler retries it with backoff and never lets it end the process.
"""

from __future__ import annotations

from typing import Protocol

from homelab_dns.core import Plan, Record


class ProviderError(Exception):
    """The provider could not read or write; the message names the server and says what to check."""


class Provider(Protocol):
    #: Shown in the API and metrics.
    name: str
    #: True when replicas share the zone (a remote server): only the leader writes. An embedded zone is each
    #: replica's own, so every replica applies its plan to it.
    shared: bool
    #: The zones the provider can write; a wanted name (or its ownership record) outside them is a problem.
    zones: tuple[str, ...]

    def records(self) -> list[Record]:
        """Every record in the provider's zones (names lowercase, no trailing dot)."""
        ...

    def apply(self, plan: Plan) -> None:
        """Write the plan's deletions, updates and creations; all of them or, where the server allows, none."""
        ...
