"""The static list (gethomepage's services.yaml format) for things outside the cluster, reloaded when it changes.

Mounted from a ConfigMap in the chart; Kubernetes swaps the file in place, so the mtime is polled. A file that
cannot be read or parsed keeps the last good apps on the page and shows the error on the diagnostics view.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import yaml

from homelab_homepage.catalog import Catalog
from homelab_homepage.core import AppSpec, Diagnostic, apps_from_static

log = logging.getLogger(__name__)


class StaticList:
    def __init__(self, path: Path, catalog: Catalog, poll_seconds: float = 5.0) -> None:
        self._path = path
        self._catalog = catalog
        self._poll = poll_seconds
        self._stamp: tuple[int, int] | None = None
        self._last_good: list[AppSpec] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        source = f"static/{self._path.name}"
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            self._stamp = stamp
            document = yaml.safe_load(self._path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self._stamp = None
            problem = Diagnostic("error", "bad-file", source, f"cannot read {self._path}: {_short(exc)}")
            self._catalog.set_static(self._last_good, [problem])
            return
        apps, diagnostics = apps_from_static(document, self._path.name)
        self._last_good = apps
        log.info("static list loaded", extra={"path": str(self._path), "apps": len(apps)})
        self._catalog.set_static(apps, diagnostics)

    def start(self) -> StaticList:
        self.load()
        self._thread = threading.Thread(target=self._run, name="homepage-static", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.wait(self._poll):
            self.load()


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
