"""Server-side URL probes (siteMonitor and href reachability), run in a background thread, never per page view.

gethomepage's siteMonitor rule: HEAD, then GET when the HEAD answered above 403 (many apps refuse HEAD); the
site is up when the final status is ≤ 403. Redirects are not followed (a redirect proves the server answers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import urllib3
from prometheus_client import Counter, Histogram

from homelab_homepage.core import ProbeResult

log = logging.getLogger(__name__)

PROBE_SECONDS = Histogram(
    "homelab_homepage_probe_duration_seconds",
    "Latency of server-side probes of siteMonitor URLs and hrefs",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROBE_FAILURES = Counter("homelab_homepage_probe_failures_total", "Probes that failed or answered > 403", ["kind"])


class Prober(Protocol):
    def __call__(self, url: str) -> ProbeResult: ...


class HttpProber:
    """One probe with urllib3: bounded by a timeout, no retries, no redirects followed."""

    def __init__(self, timeout: float, verify_tls: bool = True, concurrency: int = 8) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=concurrency,
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            headers={"User-Agent": "homelab-homepage/0.1 (siteMonitor)"},
        )

    def __call__(self, url: str) -> ProbeResult:
        started = time.perf_counter()
        try:
            response = self._pool.request("HEAD", url, redirect=False, preload_content=False)
            response.drain_conn()  # a HEAD answer has no body: the connection goes back to the pool
            if response.status > 403:
                response = self._pool.request("GET", url, redirect=False, preload_content=False)
                response.close()  # the status is all we need; never read a body of unknown size
        except urllib3.exceptions.HTTPError as exc:
            latency = (time.perf_counter() - started) * 1000
            return ProbeResult(url, False, None, round(latency, 1), _describe(exc), time.time())
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(url, response.status <= 403, response.status, round(latency, 1), "", time.time())


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    # NameResolutionError and NewConnectionError subclass ConnectTimeoutError in urllib3 2: test them first.
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "name does not resolve"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS error"
    return type(exc).__name__


class ProbeLoop:
    """Probes every target URL each interval with bounded concurrency; results are kept for the page.

    ``targets`` returns the URLs to probe now (read from the current page model); ``on_change`` is called once
    after a round whose results differ from the previous ones, so the page is rebuilt at most once per round.
    """

    def __init__(
        self,
        kind: str,
        targets: Callable[[], Iterable[str]],
        on_change: Callable[[], None],
        prober: Prober,
        interval: float,
        concurrency: int,
    ) -> None:
        self.kind = kind
        self._targets = targets
        self._on_change = on_change
        self._prober = prober
        self._interval = interval
        self._concurrency = concurrency
        self._results: dict[str, ProbeResult] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def results(self) -> dict[str, ProbeResult]:
        with self._lock:
            return dict(self._results)

    def wake(self) -> None:
        """Probe now (new targets appeared) rather than at the next interval."""
        self._wake.set()

    def start(self) -> ProbeLoop:
        self._thread = threading.Thread(target=self._run, name=f"probe-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> bool:
        """One round over the current targets; True when any result changed."""
        urls = sorted(set(self._targets()))
        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix=f"probe-{self.kind}") as pool:
            fresh = dict(zip(urls, pool.map(self._probe, urls), strict=True))
        with self._lock:
            before = self._results
            self._results = fresh
        return set(before) != set(fresh) or any(
            (before[u].ok, before[u].status_code, before[u].latency_ms) != (r.ok, r.status_code, r.latency_ms)
            for u, r in fresh.items()
        )

    def _probe(self, url: str) -> ProbeResult:
        result = self._prober(url)
        if result.latency_ms is not None:
            PROBE_SECONDS.labels(self.kind).observe(result.latency_ms / 1000)
        if not result.ok:
            PROBE_FAILURES.labels(self.kind).inc()
            log.info(
                "probe failed",
                extra={"kind": self.kind, "url": url, "status": result.status_code, "error": result.error},
            )
        return result

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if self.run_once():
                    self._on_change()
            except Exception:
                log.exception("probe round failed", extra={"kind": self.kind})
            self._wake.wait(self._interval)
