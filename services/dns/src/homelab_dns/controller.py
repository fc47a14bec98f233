"""The sync: sources -> desired records -> plan against the provider -> apply, run by homelab_common's Reconciler.

A change (an Ingress event, a forced sync) wakes the loop; bursts are debounced into one sync; a resync repairs
drift nobody told us about. A provider error never ends the loop: it is logged, counted, and retried with
exponential backoff, while the last good state keeps being served. The loop runs on every replica: an embedded
zone is each replica's own, and with a shared provider the non-leaders still plan (their API shows what they
would do) but only the leader writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

from homelab_common.k8s import Backoff, Informer, Reconciler, TemporaryError
from homelab_dns.core import (
    Desired,
    Endpoint,
    Plan,
    Policy,
    Problem,
    applied,
    desired_state,
    in_domains,
    make_plan,
    registry_name,
)
from homelab_dns.providers import Provider, ProviderError

log = logging.getLogger(__name__)

LAST_SUCCESS = Gauge("homelab_dns_last_successful_sync_timestamp_seconds", "When the last sync succeeded (unix time)")
CONSECUTIVE_ERRORS = Gauge("homelab_dns_consecutive_sync_errors", "Failed syncs since the last successful one")
SYNC_ERRORS = Counter("homelab_dns_sync_errors_total", "Failed syncs (provider errors)")
SYNCS = Counter("homelab_dns_syncs_total", "Syncs run", ["result"])
SYNC_DURATION = Histogram("homelab_dns_sync_duration_seconds", "Time to read, plan and apply")
RECORDS = Gauge("homelab_dns_records", "Records by state after the last plan", ["state"])
INVALID = Gauge("homelab_dns_invalid_endpoints", "Endpoints that cannot be published (bad name, TTL, conflict)")
OWNER_MISMATCH = Gauge("homelab_dns_owner_mismatches", "Desired records skipped: the zone's record is not ours")
CHANGES = Counter("homelab_dns_changes_total", "Records written", ["action"])
LEADER = Gauge("homelab_dns_is_leader", "1 when this replica may write to a shared provider")
for _result in ("ok", "error"):  # both start at 0, so the SLO's ratio exists before the first failure
    SYNCS.labels(_result)

STATES = ("synced", "create", "update", "delete", "retained", "drift", "blocked", "foreign")
for _state in STATES:  # 0 until the first plan, so the records panel shows a series from the start
    RECORDS.labels(_state)


class Source(Protocol):
    """Something that wants records: Kubernetes objects or the configuration."""

    def endpoints(self) -> tuple[list[Endpoint], list[Problem]]: ...

    def ready(self) -> str | None:
        """None when the source has its initial state, else why not."""
        ...


@dataclass
class SyncResult:
    ok: bool
    applied: bool
    created: int = 0
    updated: int = 0
    deleted: int = 0
    error: str = ""


@dataclass
class State:
    """What the API shows: the last plan and how the loop is doing."""

    plan: Plan = field(default_factory=Plan)
    desired: Desired = field(default_factory=Desired)
    last_success: float | None = None
    last_error: str = ""
    consecutive_errors: int = 0
    syncs: int = 0


class Controller:
    def __init__(
        self,
        provider: Provider,
        sources: Iterable[Source],
        *,
        owner: str,
        policy: Policy,
        domains: Iterable[str],
        txt_prefix: str = "",
        is_leader: Callable[[], bool] = lambda: True,
        report: Callable[[Problem], None] | None = None,
        informers: Sequence[Informer] = (),
        debounce: float = 0.1,
        resync: float = 60.0,
        backoff_max: float = 300.0,
        after_apply: Callable[[Desired], object] | None = None,
    ) -> None:
        self.provider = provider
        #: Run after each sync that may write (the tunnel routes, from the same desired records)
        self.after_apply = after_apply
        self.sources = list(sources)
        self.owner = owner
        self.policy = policy
        self.domains = list(domains)
        self.txt_prefix = txt_prefix
        self.is_leader = is_leader
        self.report = report
        self.state = State()
        self._sync_lock = threading.Lock()
        self.reconciler = Reconciler(
            self.reconcile,
            name="dns",
            informers=informers,
            debounce=debounce,
            resync_period=resync,
            backoff=Backoff(initial=0.5, maximum=backoff_max),
        )
        self._reported: set[tuple[str, str, str]] = set()
        self._blocked: set[tuple[str, str, str]] = set()

    # -- the loop (homelab_common's Reconciler: debounce, resync, backoff, waiting for informers) -------------

    def trigger(self, change: object = None) -> None:
        """Ask for a sync soon (after the debounce); takes an informer Change so it can be a handler."""
        self.reconciler.trigger()

    def start(self) -> None:
        self.reconciler.start()

    def stop(self) -> None:
        self.reconciler.stop()

    def reconcile(self) -> None:
        """The Reconciler's step: a failed sync becomes a TemporaryError, retried with backoff, never fatal."""
        result = self.sync()
        if not result.ok:
            raise TemporaryError(result.error, retry_after=0.0, reason="SyncFailed")

    def forget_reports(self) -> None:
        """Report every current problem again at the next sync (a new leader writes its own Events)."""
        self._reported = set()

    # -- one sync -------------------------------------------------------------------------------------------------

    def collect(self) -> Desired:
        endpoints: list[Endpoint] = []
        problems: list[Problem] = []
        for source in self.sources:
            found, bad = source.endpoints()
            endpoints += found
            problems += bad
        desired = desired_state(endpoints, problems, self.domains, prefix=self.txt_prefix)
        zones = self.provider.zones
        for key, ep in list(desired.records.items()):
            name = ep.record.name
            if not (
                in_domains(name, zones) and in_domains(registry_name(name, ep.record.type, self.txt_prefix), zones)
            ):
                del desired.records[key]
                reason = f"{name} (or its ownership record) is outside the zone(s) {', '.join(zones)} we write"
                desired.problems.append(Problem(ep.resource, name, reason))
        return desired

    def sync(self) -> SyncResult:
        """Read, plan and (when allowed) apply. Never raises: errors are logged, counted and returned."""
        with self._sync_lock, SYNC_DURATION.time():
            try:
                return self._sync()
            except ProviderError as exc:
                return self._failed(str(exc))
            except Exception as exc:  # a bug must not end the loop either; it is logged with its traceback
                log.exception("sync failed unexpectedly")
                return self._failed(f"internal error: {type(exc).__name__}: {exc}")

    def _sync(self) -> SyncResult:
        desired = self.collect()
        self._report(desired.problems)
        current = self.provider.records()
        plan = make_plan(desired.records, current, self.owner, self.policy, prefix=self.txt_prefix)
        leader = self.is_leader()
        LEADER.set(1 if leader else 0)
        result = SyncResult(True, False)
        if (leader or not self.provider.shared) and not plan.empty:
            log.info(
                "applying changes",
                extra={
                    "provider": self.provider.name,
                    "create": [f"{r.name} {r.type}" for r in plan.create],
                    "update": [f"{n.name} {n.type}" for _, n in plan.update],
                    "delete": [f"{r.name} {r.type}" for r in plan.delete],
                },
            )
            self.provider.apply(plan)
            result = SyncResult(True, True, len(plan.create), len(plan.update), len(plan.delete))
            CHANGES.labels("create").inc(result.created)
            CHANGES.labels("update").inc(result.updated)
            CHANGES.labels("delete").inc(result.deleted)
            plan = make_plan(desired.records, applied(current, plan), self.owner, self.policy, prefix=self.txt_prefix)
        if (leader or not self.provider.shared) and self.after_apply is not None:
            self.after_apply(desired)
        blocked = {(v.name, v.type, v.reason) for v in plan.views if v.state == "blocked"}
        for name, rtype, reason in sorted(blocked - self._blocked):
            log.warning("record not ours, skipped", extra={"record": f"{name} {rtype}", "reason": reason})
        self._blocked = blocked
        counts = plan.states()
        for state in STATES:
            RECORDS.labels(state).set(counts.get(state, 0))
        INVALID.set(len(desired.problems))
        OWNER_MISMATCH.set(plan.owner_mismatches)
        self.state = State(plan, desired, time.time(), "", 0, self.state.syncs + 1)
        LAST_SUCCESS.set(self.state.last_success or 0)
        CONSECUTIVE_ERRORS.set(0)
        SYNCS.labels("ok").inc()
        return result

    def _failed(self, message: str) -> SyncResult:
        state = self.state
        state.consecutive_errors += 1
        state.last_error = message
        state.syncs += 1
        CONSECUTIVE_ERRORS.set(state.consecutive_errors)
        SYNC_ERRORS.inc()
        SYNCS.labels("error").inc()
        log.error("sync failed", extra={"error": message, "consecutive_errors": state.consecutive_errors})
        return SyncResult(False, False, error=message)

    def _report(self, problems: list[Problem]) -> None:
        """Log and report each problem once while it lasts (not on every resync)."""
        current = {(p.resource, p.name, p.reason) for p in problems}
        for problem in problems:
            key = (problem.resource, problem.name, problem.reason)
            if key in self._reported:
                continue
            log.warning("invalid endpoint", extra={"resource": problem.resource, "reason": problem.reason})
            if self.report is not None:
                try:
                    self.report(problem)
                except Exception:
                    log.exception("could not report an invalid endpoint", extra={"resource": problem.resource})
        self._reported = current

    def ready(self) -> str | None:
        for source in self.sources:
            reason = source.ready()
            if reason:
                return reason
        if not self.provider.shared and self.state.last_success is None:
            return "the zone has not been synced yet"
        return None


class StaticSource:
    """Records from configuration (the router, the NAS: things outside the cluster)."""

    def __init__(self, endpoints: list[Endpoint], problems: list[Problem]) -> None:
        self._endpoints = endpoints
        self._problems = problems

    def endpoints(self) -> tuple[list[Endpoint], list[Problem]]:
        return list(self._endpoints), list(self._problems)

    def ready(self) -> str | None:
        return None
