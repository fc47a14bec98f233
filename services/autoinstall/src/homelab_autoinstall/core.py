"""Install states and the rules between them: pure decisions, no I/O.

    pending ──armed──▶ pending+window ──user-data fetched──▶ installing ──installer reports (nonce)──▶ installed
       ▲                                                          │                                        │
       ├──────────── user-data fetched again: window burned, alarm ◀┘                                        │
       └──────────────────────────────── reinstall request ◀───────────────────────────────────────────────┘

A pending machine installs only inside an **install window**: `task up` (or an authenticated API call) arms it just
before waking it, with a fresh seed token and an expiry. Without a window pxe gets no seed URL for it and the seed
serves nothing. ``user-data`` is served **once** per window: the fetch moves the machine to installing and hands out
a per-fetch nonce; a second fetch is an alarm (someone else has the config too), it burns the window, and only a
report carrying that nonce can mark the install complete. The other seed files hold no secrets and stay readable
with the token until the machine is installed, because cloud-init reads them around user-data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class State(StrEnum):
    PENDING = "pending"
    INSTALLING = "installing"
    INSTALLED = "installed"


SEED_FILES = ("meta-data", "user-data", "vendor-data", "network-config")
#: Seed files holding the machine's install config: served once per install window.
ONE_SHOT = "user-data"

RefusalReason = Literal[
    "unknown-machine", "bad-token", "wrong-state", "source-ip", "unknown-file", "untrusted-source",
    "not-armed", "refetch", "bad-nonce",
]  # fmt: skip


class Refused(Exception):
    """A seed request that must get nothing but a 403; ``reason`` is logged and counted, never returned."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(reason)
        self.reason: RefusalReason = reason


class NotArmable(Exception):
    """An installed machine cannot be armed: it must be asked to reinstall first."""


def boot_action(state: State, armed: bool) -> Literal["install", "local", "wait"]:
    """What PXE should do: install inside an armed window, boot the disk once installed, else wait to be armed.

    A machine PXE-booting while installing gets its seed URL again, though its user-data will be refused: if
    someone else made the first fetch, the machine's own fetch is what raises the alarm (and its install fails
    loudly instead of waiting silently); if its installer restarted, a second fetch is worth a look too.
    """
    if state is State.INSTALLED:
        return "local"
    if state is State.INSTALLING:
        return "install"
    return "install" if armed else "wait"


def after_arm(state: State) -> State:
    """Arming opens a fresh window; a machine whose install went wrong (installing) may be armed again."""
    if state is State.INSTALLED:
        raise NotArmable("installed")
    return State.PENDING


def after_fetch(state: State, file: str, armed: bool) -> State:
    """The state after serving ``file``; raises Refused when it must not be served."""
    if state is State.PENDING:
        if not armed:
            raise Refused("not-armed")
        return State.INSTALLING if file == ONE_SHOT else state
    if state is State.INSTALLING:
        if file == ONE_SHOT:
            raise Refused("refetch")
        return state
    raise Refused("wrong-state")


def after_installed_report(state: State, nonce_matches: bool) -> State:
    """Only the installer that received the config can finish: an install in progress and that fetch's nonce."""
    if state is not State.INSTALLING:
        raise Refused("wrong-state")
    if not nonce_matches:
        raise Refused("bad-nonce")
    return State.INSTALLED
