"""Install states and the rules between them: pure decisions, no I/O.

    pending ──user-data fetched──▶ installing ──installer reports──▶ installed ──▶ PXE answers "local"
       ▲                                                                  │
       └──────────────────────────── reinstall request ◀──────────────────┘ (from any state; fresh token)

Seed files are served only while pending or installing, for the machine's MAC and current token: once a machine
is installed its token is spent, so a config with secrets in it cannot be fetched again until a reinstall.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class State(StrEnum):
    PENDING = "pending"
    INSTALLING = "installing"
    INSTALLED = "installed"


SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")
SERVABLE = frozenset({State.PENDING, State.INSTALLING})

RefusalReason = Literal["unknown-machine", "bad-token", "wrong-state", "source-ip", "unknown-file", "untrusted-source"]


class Refused(Exception):
    """A seed request that must get nothing but a 403; ``reason`` is logged and counted, never returned."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(reason)
        self.reason: RefusalReason = reason


def boot_action(state: State) -> Literal["install", "local"]:
    """What PXE should do for a known machine: install until the installer has reported success."""
    return "local" if state is State.INSTALLED else "install"


def after_fetch(state: State, file: str) -> State:
    """The state after serving ``file``; raises Refused when it must not be served."""
    if state not in SERVABLE:
        raise Refused("wrong-state")
    if file == "user-data":
        return State.INSTALLING
    return state


def after_installed_report(state: State) -> State:
    """Only an install in progress can finish: a report without a fetched config is not believed."""
    if state is not State.INSTALLING:
        raise Refused("wrong-state")
    return State.INSTALLED
