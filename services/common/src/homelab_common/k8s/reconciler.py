"""The loop around a service's reconcile step: when to run it, and what to do when it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from homelab_common.k8s.backoff import Backoff
from homelab_common.k8s.errors import PermanentError, ReconcileError, TemporaryError

if TYPE_CHECKING:
    from homelab_common.k8s.events import EventRecorder
    from homelab_common.k8s.informer import Change, Informer

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    """Runs ``reconcile()`` — the service's "compare desired with observed, then act" — on a thread.

    It runs once all ``informers`` have synced (an unsynced cache looks empty, and reconciling against
    "nothing exists" would delete everything), then whenever ``trigger()`` is called, debounced: the first
    trigger opens a window of ``debounce`` seconds and everything arriving in it is handled by one run,
    so a burst of watch events (a namespace being deleted) costs one reconcile, not hundreds. Without
    triggers it still runs every ``resync_period`` to repair drift nobody told us about.

    Outcomes: success resets the backoff; :class:`TemporaryError` retries after ``max(retry_after,
    backoff)``; :class:`PermanentError` is reported and not retried until the next trigger (retrying
    cannot help, and hammering a provider with a refused credential can get it locked); any other
    exception is a bug, logged with its traceback and retried with backoff. Errors carrying an object are
    also reported on it as a Warning Event. Nothing ends the loop except ``stop()``.
    """

    def __init__(
        self,
        reconcile: Callable[[], None],
        *,
        name: str = "reconciler",
        informers: Sequence[Informer] = (),
        debounce: float = 0.1,
        resync_period: float = 300.0,
        backoff: Backoff | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.name = name
        self.runs = 0
        self.last_error: Exception | None = None
        self._reconcile = reconcile
        self._informers = list(informers)
        self._debounce = debounce
        self._resync_period = resync_period
        self._backoff = backoff or Backoff(initial=1.0, maximum=300.0)
        self._recorder = recorder
        self._cond = threading.Condition()
        self._stopping = False
        self._changed_at: float | None = None  # the first trigger not yet handled by a run
        self._due: float | None = 0.0  # the next scheduled run (start, resync or retry); None = on change
        self._thread: threading.Thread | None = None

    def trigger(self, change: Change | None = None) -> None:
        """Ask for a run soon; takes an informer :class:`Change` so it can be an informer handler."""
        with self._cond:
            if self._changed_at is None:
                self._changed_at = time.monotonic()
                self._cond.notify()

    def start(self) -> Reconciler:
        """Start (or restart after ``stop()``: leadership can be lost and won again) with a fresh run."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"reconciler {self.name} already running")
            self._stopping = False
            self._due = 0.0
            self._thread = threading.Thread(target=self._run, name=f"reconciler-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop waiting and return; a reconcile already running is finished first (it cannot be cut)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Reconciler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        for informer in self._informers:
            while not informer.wait_for_sync(0.1):
                if self._stopping:
                    return
        while self._wait_until_due():
            self._run_once()

    def _wait_until_due(self) -> bool:
        with self._cond:
            while not self._stopping:
                wake_times = [] if self._due is None else [self._due]
                if self._changed_at is not None:
                    wake_times.append(self._changed_at + self._debounce)
                wake = min(wake_times, default=None)
                now = time.monotonic()
                if wake is not None and now >= wake:
                    self._changed_at = None
                    return True
                self._cond.wait(None if wake is None else wake - now)
            return False

    def _run_once(self) -> None:
        self.runs += 1
        try:
            self._reconcile()
        except TemporaryError as exc:
            delay = max(exc.retry_after, self._backoff.next())
            self._failed(exc, time.monotonic() + delay, logging.WARNING)
        except PermanentError as exc:
            self._backoff.reset()
            self._failed(exc, None, logging.ERROR)
        except Exception as exc:
            log.exception("reconcile crashed; retrying", extra={"reconciler": self.name})
            self._failed(exc, time.monotonic() + self._backoff.next(), None)
        else:
            self.last_error = None
            self._backoff.reset()
            self._schedule(time.monotonic() + self._resync_period)

    def _failed(self, exc: Exception, retry_at: float | None, level: int | None) -> None:
        self.last_error = exc
        self._schedule(retry_at)
        if not isinstance(exc, ReconcileError):
            return
        retry_in = None if retry_at is None else round(retry_at - time.monotonic(), 2)
        extra = {"reconciler": self.name, "error": exc.message, "reason": exc.reason, "retry_in": retry_in}
        if exc.obj is not None:
            extra["object"] = str(exc.obj)
        log.log(level or logging.ERROR, "reconcile failed", extra=extra)
        if exc.obj is not None and self._recorder is not None:
            self._recorder.warning(exc.obj, exc.reason, exc.message)

    def _schedule(self, due: float | None) -> None:
        with self._cond:
            self._due = due
