"""The page model: rebuilt in a background thread when the cluster, the static list or a probe changes.

A page view never computes anything: it serves the bytes rendered at the last rebuild (the HTML page, the card
fragment the browser refreshes, the JSON list), gzipped once. Rebuilds are debounced so a burst of watch events
(a rollout, a relist) costs one rebuild. Kubernetes is never asked anything on a page view: the adapter feeds
this catalog from its watch caches.
"""

from __future__ import annotations

import ctypes
import gc
import gzip
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from prometheus_client import Counter, Gauge, Histogram

from homelab_homepage import icons
from homelab_homepage.core import (
    STATUSES,
    AppSpec,
    Card,
    ClusterIndex,
    Diagnostic,
    PageModel,
    ProbeResult,
    SlimIngress,
    SlimPod,
    SlimService,
    SlimSlice,
    Status,
    app_from_ingress,
    combine,
    host_of,
    order_groups,
    search_text,
)

log = logging.getLogger(__name__)

APPS = Gauge("homelab_homepage_apps", "Apps discovered, by where they came from", ["source"])
APPS_BY_STATUS = Gauge("homelab_homepage_apps_by_status", "Apps by health status", ["status"])
DIAGNOSTICS = Gauge("homelab_homepage_diagnostics", "Configuration mistakes currently listed, by kind", ["kind"])
MISTAKES = Counter("homelab_homepage_mistakes_total", "Configuration mistakes found (each counted once)", ["kind"])
BUILD_SECONDS = Histogram(
    "homelab_homepage_model_build_seconds",
    "Time to rebuild and render the page model",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

Kind = Literal["ingress", "pod", "slice", "service"]


_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def _libc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (has malloc_trim and mallopt); None elsewhere (musl): tuning is skipped."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def release_free_memory() -> None:
    """glibc's ``malloc_trim(0)``: give the heap's free pages back to the kernel.

    A rebuild (and the watch caches' first list before it) allocates far more than it keeps: the JSON of every
    object, the page rendered as text. glibc keeps what was freed for reuse, so without this the process stays
    as large as its peak (about 3 MB more with 500 apps).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def tune_malloc() -> None:
    """Before the threads start: at most two malloc arenas (glibc gives every thread that allocates under
    contention its own, up to 8 per core, each keeping its free memory), and a fixed mmap threshold, so a large
    block (a rendered page, a list response) is always mmapped and unmapped when freed (glibc otherwise raises
    the threshold to the largest block freed so far, and later ones stay in the heap)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, 2)
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


@dataclass(frozen=True)
class Rendered:
    """Bytes rendered once per rebuild, kept once: HTML gzipped (what browsers ask for; a client that does not
    accept gzip gets it decompressed per request), JSON as is (served uncompressed)."""

    data: bytes
    compressed: bool

    @classmethod
    def of(cls, text: str | bytes, compress: bool = True) -> Rendered:
        body = text.encode() if isinstance(text, str) else text
        return cls(gzip.compress(body, compresslevel=5, mtime=0), True) if compress else cls(body, False)

    @property
    def body(self) -> bytes:
        return gzip.decompress(self.data) if self.compressed else self.data


@dataclass(frozen=True)
class Snapshot:
    """Everything a page view needs, computed once per rebuild."""

    model: PageModel
    etag: str
    page: Rendered
    fragment: Rendered
    apps_json: Rendered


class Renderer(Protocol):
    """Turns a model into the page, the card fragment and the JSON list (supplied by the app layer)."""

    def page(self, model: PageModel, query: str, etag: str) -> str: ...

    def fragment(self, model: PageModel) -> str: ...

    def apps_json(self, model: PageModel) -> bytes: ...


class Catalog:
    def __init__(
        self,
        renderer: Renderer,
        *,
        instance_name: str = "",
        group_weights: dict[str, int] | None = None,
        debounce: float = 0.05,
        require_sync: bool = True,
    ) -> None:
        self._renderer = renderer
        self._instance = instance_name
        self._group_weights = dict(group_weights or {})
        self._debounce = debounce
        self._lock = threading.Lock()
        self._ingresses: dict[str, tuple[AppSpec | None, list[Diagnostic]]] = {}
        self._pods: dict[str, SlimPod] = {}
        self._slices: dict[str, SlimSlice] = {}
        self._services: dict[str, SlimService] = {}
        self._static: tuple[list[AppSpec], list[Diagnostic]] = ([], [])
        self._synced = not require_sync
        self._probes: Callable[[], dict[str, ProbeResult]] = dict
        self._hrefs: Callable[[], dict[str, ProbeResult]] = dict
        self._generation = 0
        self._seen: set[tuple[str, str, str, str]] = set()
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._built = threading.Condition()
        self._thread: threading.Thread | None = None
        self._icon_cache: dict[tuple[str | None, str], icons.Resolved] = {}
        self._collected = False
        self._snapshot = self._build()

    # -- inputs ----------------------------------------------------------------------------------------

    def apply(self, kind: Kind, key: str, obj: SlimIngress | SlimPod | SlimSlice | SlimService | None) -> None:
        """Record an object from a watch (None: deleted) and schedule a rebuild."""
        with self._lock:
            if kind == "ingress":
                if obj is None:
                    self._ingresses.pop(key, None)
                else:
                    assert isinstance(obj, SlimIngress)
                    self._ingresses[key] = app_from_ingress(obj, self._instance)
            else:
                store: dict[str, object] = {"pod": self._pods, "slice": self._slices, "service": self._services}[kind]  # type: ignore[assignment]
                if obj is None:
                    store.pop(key, None)
                else:
                    store[key] = obj
        self.invalidate()

    def set_synced(self, synced: bool) -> None:
        with self._lock:
            self._synced = synced
        self.invalidate()

    def set_static(self, apps: list[AppSpec], diagnostics: list[Diagnostic]) -> None:
        with self._lock:
            self._static = (apps, diagnostics)
        self.invalidate()

    def use_probes(
        self, monitors: Callable[[], dict[str, ProbeResult]], hrefs: Callable[[], dict[str, ProbeResult]]
    ) -> None:
        self._probes, self._hrefs = monitors, hrefs

    def on_rebuild(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    # -- outputs ---------------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def synced(self) -> bool:
        return self._synced

    def monitor_urls(self) -> list[str]:
        return sorted({c.site_monitor for c in self._snapshot.model.cards if c.site_monitor})

    def href_urls(self) -> list[str]:
        return sorted({c.href for c in self._snapshot.model.cards if c.href})

    def wait_for(self, predicate: Callable[[Snapshot], bool], timeout: float) -> bool:
        """Block until a snapshot satisfies ``predicate`` (tests and the benchmark use this)."""
        deadline = time.monotonic() + timeout
        with self._built:
            while not predicate(self._snapshot):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._built.wait(remaining)
        return True

    # -- rebuilding ------------------------------------------------------------------------------------

    def invalidate(self) -> None:
        if self._thread is None:
            self.rebuild()
        else:
            self._dirty.set()

    def start(self) -> Catalog:
        self._thread = threading.Thread(target=self._run, name="homepage-model", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._stopping.wait(self._debounce)  # coalesce a burst of changes into one rebuild
            self._dirty.clear()
            try:
                self.rebuild()
            except Exception:
                log.exception("page model rebuild failed")

    def rebuild(self) -> Snapshot:
        started = time.perf_counter()
        snapshot = self._build()
        with self._built:
            self._snapshot = snapshot
            self._built.notify_all()
        BUILD_SECONDS.observe(time.perf_counter() - started)
        for listener in self._listeners:
            listener(snapshot)
        if snapshot.model.synced and not self._collected:
            # Start-up garbage in reference cycles (schemas, compiled templates, the first lists) is freed now,
            # before the trim, rather than whenever the collector gets to it.
            self._collected = True
            gc.collect()
        release_free_memory()  # the previous snapshot and this build's intermediates are garbage now
        return snapshot

    def _build(self) -> Snapshot:
        with self._lock:
            parsed = list(self._ingresses.values())
            index = ClusterIndex.build(self._services.values(), self._slices.values(), self._pods.values())
            static_apps, static_diagnostics = self._static
            synced = self._synced
            self._generation += 1
            generation = self._generation
        probes, hrefs = self._probes(), self._hrefs()
        specs = [spec for spec, _ in parsed if spec is not None] + list(static_apps)
        diagnostics = [d for _, found in parsed for d in found] + list(static_diagnostics)
        cards = []
        for spec in specs:
            cards.append(self._card(spec, index, synced, probes))
            diagnostics.extend(self._icon_problem(spec))
            if spec.href and (checked := hrefs.get(spec.href)) is not None and not checked.ok:
                said = f"HTTP {checked.status_code}" if checked.status_code is not None else checked.error
                diagnostics.append(
                    Diagnostic("warning", "unreachable-href", spec.source, f"href {spec.href} is unreachable: {said}")
                )
        diagnostics.sort(key=lambda d: ({"error": 0, "warning": 1, "info": 2}[d.severity], d.source, d.message))
        weights = {spec.id: spec.weight for spec in specs}
        groups = order_groups(cards, self._group_weights, weights)
        counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for card in cards:
            counts[card.status] += 1
        ordered = tuple(card for group in groups for card in group.cards)
        model = PageModel(generation, groups, counts, tuple(diagnostics), synced, ordered)
        self._account(model, specs)
        fragment = self._renderer.fragment(model).encode()
        etag = hashlib.sha256(fragment).hexdigest()[:20]
        return Snapshot(
            model=model,
            etag=etag,
            page=Rendered.of(self._renderer.page(model, "", etag)),
            fragment=Rendered.of(fragment),
            apps_json=Rendered.of(self._renderer.apps_json(model), compress=False),
        )

    def _resolve_icon(self, spec: AppSpec) -> icons.Resolved:
        key = (spec.icon, spec.name)
        if key not in self._icon_cache:
            self._icon_cache[key] = icons.resolve(spec.icon, spec.name)
        return self._icon_cache[key]

    def _icon_problem(self, spec: AppSpec) -> Iterable[Diagnostic]:
        problem = self._resolve_icon(spec).problem
        return [Diagnostic("info", "unknown-icon", spec.source, problem, key="icon")] if problem else []

    def _card(self, spec: AppSpec, index: ClusterIndex, synced: bool, probes: dict[str, ProbeResult]) -> Card:
        cluster = index.cluster_health(spec.target, synced)
        health = combine(cluster, spec.site_monitor, probes.get(spec.site_monitor or ""))
        name = spec.name
        return Card(
            id=spec.id,
            name=name,
            group=spec.group,
            href=spec.href,
            icon_url=self._resolve_icon(spec).url,
            letter=(name.strip()[:1] or "?").upper(),
            description=spec.description,
            status=health.status,
            reason=health.reason,
            ready=health.ready,
            total=health.total,
            latency_ms=health.latency_ms,
            site_monitor=spec.site_monitor,
            source=spec.source,
            convention=spec.convention,
            search=search_text(name, spec.description, spec.group, host_of(spec.href)),
        )

    def _account(self, model: PageModel, specs: list[AppSpec]) -> None:
        """Metrics for the new model; each mistake is logged and counted once, when it first appears."""
        by_source = {"ingress": 0, "static": 0}
        for spec in specs:
            by_source["static" if spec.convention == "static" else "ingress"] += 1
        for source, count in by_source.items():
            APPS.labels(source).set(count)
        for status, count in model.counts.items():
            APPS_BY_STATUS.labels(status).set(count)
        kinds: dict[str, int] = {}
        current = set()
        for d in model.diagnostics:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
            identity = (d.kind, d.source, d.key, d.message)
            current.add(identity)
            if identity not in self._seen:
                MISTAKES.labels(d.kind).inc()
                level = logging.WARNING if d.severity != "info" else logging.INFO
                log.log(level, "configuration mistake", extra={"object": d.source, "kind": d.kind, "reason": d.message})
        for kind in {k for (k, _, _, _) in self._seen} | set(kinds):
            DIAGNOSTICS.labels(kind).set(kinds.get(kind, 0))
        self._seen = current
