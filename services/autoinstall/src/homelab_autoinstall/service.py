"""The service's decisions, wired to its adapters: inventory (site file), store (SQLite), metrics, logs, alarms.

Every seed request goes through :meth:`Provisioner.authorise`: known machine, current token (constant-time), the
machine's own address when asked to check it, and then (core) an armed install window or an install in progress. A
refusal is logged with the machine's identity and the reason, counted, and answered with a bare 403 by the API:
never the token, never a hint which check failed. A second user-data fetch is more than a refusal: it is an alarm
(log warning, metric, stored event, a Kubernetes Event in-cluster) and burns the window.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homelab_autoinstall import metrics, userdata
from homelab_autoinstall.core import (
    ONE_SHOT,
    SEED_FILES,
    Refused,
    State,
    after_arm,
    after_fetch,
    after_installed_report,
    boot_action,
)
from homelab_autoinstall.inventory import Inventory
from homelab_autoinstall.secrets import new_nonce, new_seed_token, same_token
from homelab_autoinstall.store import Event, Record, Store
from homelab_common.logs import REDACTED
from homelab_common.site import Machine, Site, normalise_mac
from homelab_common.wol import wake_on_lan

log = logging.getLogger("homelab.autoinstall")

MAX_EVENT_TEXT = 500
#: Called with the machine and the alarm's text (the in-cluster Kubernetes Event recorder is one).
AlarmSink = Callable[[Machine, str], None]


class UnknownMachine(Exception):
    """The MAC is not in the inventory."""


@dataclass(frozen=True)
class Boot:
    action: str
    machine: Machine
    seed_url: str | None


class Provisioner:
    def __init__(
        self,
        inventory: Inventory,
        store: Store,
        options: userdata.InstallOptions,
        *,
        check_source_ip: bool = False,
        alarm_sinks: list[AlarmSink] | None = None,
    ) -> None:
        self.inventory = inventory
        self.store = store
        self.options = options
        self.check_source_ip = check_source_ip
        self.alarm_sinks = alarm_sinks or []
        self._synced: Site | None = None
        self._sync_lock = threading.Lock()
        self.sync()

    # -- inventory ↔ store

    def site(self) -> Site:
        """The current site, with any machine new to it registered as pending first."""
        site = self.inventory.site
        if site is not self._synced:
            self.sync()
        return site

    def sync(self) -> None:
        with self._sync_lock:
            site = self.inventory.site
            for machine in site.machines:
                event = self.store.register(machine.mac, machine.name, new_seed_token())
                if event is not None:
                    self._log_event(event)
            self._synced = site
        self.update_gauge()

    def update_gauge(self) -> None:
        known = {m.mac for m in self.inventory.site.machines}
        counts = dict.fromkeys(State, 0)
        for record in self.store.all():
            if record.mac in known:
                counts[record.state] += 1
        for state, count in counts.items():
            metrics.MACHINES.labels(state.value).set(count)

    # -- API reads and commands

    def machines(self) -> list[tuple[Machine, Record]]:
        site = self.site()
        records = {r.mac: r for r in self.store.all()}
        return [(m, records[m.mac]) for m in site.machines if m.mac in records]

    def machine(self, mac: str) -> tuple[Machine, Record]:
        self.site()
        machine = self.inventory.machine(mac)
        record = self.store.get(machine.mac) if machine is not None else None
        if machine is None or record is None:
            raise UnknownMachine(mac)
        return machine, record

    def boot(self, mac: str, public_url: str) -> Boot:
        """pxe's question: install (with the seed URL, only inside an armed window), boot from the local disk, or
        wait to be armed. Changes nothing."""
        machine, record = self.machine(mac)
        action = boot_action(record.state, record.armed())
        seed = seed_url(public_url, record) if action == "install" else None
        return Boot(action, machine, seed)

    def arm(self, mac: str, seconds: int) -> tuple[Machine, Record]:
        """Open an install window: a fresh seed token, valid for ``seconds`` until the first user-data fetch.

        Raises core.NotArmable for an installed machine (reinstall first: that is a decision, not a side effect).
        """
        machine, _ = self.machine(mac)

        def decide(current: Record) -> State:
            return after_arm(current.state)

        record, event = self.store.reset(
            machine.mac, new_seed_token(), f"install window armed for {seconds}s", kind="armed",
            armed_until=time.time() + seconds, next_generation=False, decide=decide,
        )  # fmt: skip
        metrics.ARMED.inc()
        self._log_event(event)
        self.update_gauge()
        return machine, record

    def reinstall(self, mac: str) -> tuple[Machine, Record]:
        machine, _ = self.machine(mac)
        record, event = self.store.reset(machine.mac, new_seed_token(), "reinstall requested")
        metrics.REINSTALLS.inc()
        self._log_event(event)
        self.update_gauge()
        return machine, record

    def wake(self, mac: str, broadcast: str | None, port: int) -> tuple[Machine, str]:
        """Send the machine a Wake-on-LAN packet (to ``broadcast``, default the LAN's directed broadcast)."""
        machine, _ = self.machine(mac)
        target = broadcast or wol_target(self.inventory.site)
        wake_on_lan(machine.mac, target, port)
        metrics.WAKES.inc()
        log.info("wake-on-lan sent", extra={"machine": machine.name, "mac": machine.mac, "broadcast": target})
        return machine, target

    def events(self, since: int, limit: int, mac: str | None = None) -> list[Event]:
        return self.store.events(since, limit, normalise_mac(mac) if mac else None)

    # -- the installer's requests

    def authorise(self, mac_hyphenated: str, token: str, remote: str | None, what: str) -> tuple[Machine, Record]:
        """The machine whose seed URL this is, or Refused (logged and counted here)."""
        machine: Machine | None = None
        try:
            self.site()
            machine = self.inventory.machine(mac_hyphenated)
            record = self.store.get(machine.mac) if machine is not None else None
            if machine is None or record is None:
                raise Refused("unknown-machine")
            if not same_token(token, record.seed_token):
                raise Refused("bad-token")
            if self.check_source_ip and remote != str(machine.ip):
                raise Refused("source-ip")
            return machine, record
        except Refused as exc:
            self.refused(exc, machine, mac_hyphenated, what, remote)
            raise

    def refused(self, exc: Refused, machine: Machine | None, mac: str, what: str, remote: str | None) -> None:
        metrics.REFUSALS.labels(exc.reason).inc()
        log.warning(
            "seed request refused",
            extra={
                "reason": exc.reason,
                "machine": machine.name if machine else None,
                "mac": machine.mac if machine else mac[:40],
                "file": what,
                "remote": remote,
            },
        )

    def seed_file(self, mac_hyphenated: str, token: str, file: str, remote: str | None, public_url: str) -> str:
        """The text of one seed file; the first user-data fetch moves the machine to installing, a second one is
        an alarm."""
        machine, record = self.authorise(mac_hyphenated, token, remote, file)
        if file not in SEED_FILES:
            exc = Refused("unknown-file")
            self.refused(exc, machine, mac_hyphenated, file, remote)
            raise exc
        seen: list[Record] = []

        def decide(current: Record) -> State:
            seen.append(current)
            if not same_token(token, current.seed_token):  # a reinstall or arm replaced the token meanwhile
                raise Refused("bad-token")
            return after_fetch(current.state, file, current.armed())

        fields: dict[str, Any] = {}
        if file == ONE_SHOT:
            fields = {"nonce": new_nonce(), "fetched_from": remote, "armed_until": None}
        try:
            record, event = self.store.transition(machine.mac, decide, f"{file} fetched by the installer", **fields)
        except Refused as exc:
            self.refused(exc, machine, mac_hyphenated, file, remote)
            if exc.reason == "refetch":
                self.alarm(machine, seen[-1], remote)
            raise
        metrics.SEED_FETCHES.labels(file).inc()
        if event is not None:
            self._log_event(event, remote=remote)
            self.update_gauge()
        else:
            log.info("seed file served", extra={"machine": machine.name, "mac": machine.mac, "file": file})
        site = self.inventory.site
        if file == "meta-data":
            return userdata.meta_data(machine, record.generation)
        if file == "vendor-data":
            return userdata.vendor_data()
        if file == "network-config":
            return userdata.network_config(site, machine)
        assert record.nonce is not None  # set by the transition to installing, in the same write
        secrets = userdata.MachineSecrets(nonce=record.nonce)
        return userdata.user_data(site, machine, secrets, seed_url(public_url, record), self.options)

    def alarm(self, machine: Machine, fetched: Record, remote: str | None) -> None:
        """user-data was asked for a second time: someone else holds this install's config. Burn the window (a fresh
        token, not armed: neither fetcher can report installed) and say so everywhere a person looks."""
        first = fetched.fetched_from or "unknown"
        message = f"seed for {machine.name} fetched twice, from {first} and {remote or 'unknown'}"
        detail = {"first": first, "second": remote or "unknown"}
        _, event = self.store.reset(
            machine.mac, new_seed_token(), message + "; install window burned, arm it again",
            kind="alarm", next_generation=False, detail=detail,
        )  # fmt: skip
        metrics.ALARMS.inc()
        log.warning(message, extra={"machine": machine.name, "mac": machine.mac, "event_id": event.id, **detail})
        self.update_gauge()
        for sink in self.alarm_sinks:
            try:
                sink(machine, message)
            except Exception as exc:  # an alarm sink must never turn a refusal into a 500
                log.warning("alarm not delivered", extra={"machine": machine.name, "error": str(exc)})

    def installed(self, mac_hyphenated: str, token: str, nonce: str, remote: str | None) -> Record:
        machine, _ = self.authorise(mac_hyphenated, token, remote, "installed")

        def decide(current: Record) -> State:
            if not same_token(token, current.seed_token):
                raise Refused("bad-token")
            return after_installed_report(current.state, same_token(nonce, current.nonce or ""))

        try:
            record, event = self.store.transition(machine.mac, decide, "installer reported the install complete")
        except Refused as exc:
            self.refused(exc, machine, mac_hyphenated, "installed", remote)
            raise
        if event is not None:
            metrics.INSTALLS.inc()
            self._log_event(event, remote=remote)
            self.update_gauge()
        return record

    def installer_event(self, mac_hyphenated: str, token: str, body: dict[str, Any], remote: str | None) -> Event:
        """A subiquity reporting-webhook event (start/finish of each stage): stored for the API, counted by result.

        Accepted with the current token in any state: subiquity goes on reporting after the final late-command.
        """
        machine, record = self.authorise(mac_hyphenated, token, remote, "events")
        known = (record.seed_token, record.nonce or "")
        detail: dict[str, Any] = {
            key: scrub(str(body[key]), known)[:MAX_EVENT_TEXT]
            for key in ("event_type", "name", "description", "result", "origin", "level", "timestamp")
            if key in body and body[key] is not None
        }
        result = detail.get("result", "none").lower()
        metrics.INSTALLER_EVENTS.labels(result if result in {"success", "fail", "warn"} else "none").inc()
        message = " ".join(detail.get(k, "") for k in ("event_type", "name", "result")).strip() or "installer event"
        event = self.store.add_installer_event(machine.mac, machine.name, message, detail)
        level = logging.WARNING if result == "fail" else logging.DEBUG
        log.log(level, "installer event", extra={"machine": machine.name, "mac": machine.mac, "event": detail})
        return event

    def _log_event(self, event: Event, remote: str | None = None) -> None:
        log.info(
            event.message,
            extra={
                "machine": event.machine,
                "mac": event.mac,
                "event_id": event.id,
                "kind": event.kind,
                "from_state": event.from_state,
                "to_state": event.to_state,
                "remote": remote,
            },
        )


#: Long runs of base64 with a digit in them: the encoded files of the late-commands.
_BLOB = re.compile(r"[A-Za-z0-9+/=]{40,}")
_CRYPT_HASH = re.compile(r"\$(?:1|5|6|y|2[aby])\$[^\s'\"]+")


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove secrets from installer event text before it is stored, served or logged.

    subiquity describes each late-command by its command line, so events echo our own commands back: the seed URL
    (with the token, still valid while installing), the nonce and the base64-encoded files.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _CRYPT_HASH.sub(REDACTED, text)
    return _BLOB.sub(lambda m: REDACTED if any(c.isdigit() for c in m.group(0)) else m.group(0), text)


def wol_target(site: Site) -> str:
    """The LAN's directed broadcast: reaches sleeping NICs on that LAN from wherever we run (not only on-link)."""
    return str(site.lan.subnet.broadcast_address)


def seed_url(public_url: str, record: Record) -> str:
    return f"{public_url.rstrip('/')}/seed/{userdata.mac_hyphenated(record.mac)}/{record.seed_token}/"
