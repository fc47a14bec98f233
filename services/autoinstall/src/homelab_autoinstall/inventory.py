"""The machines, from the site file (validated by homelab_common.site), re-read when the file changes.

A bad site file at start stops the service naming every problem (``machines[1].mac: not a MAC address``). A bad
edit while running is logged with the same detail and the last good inventory stays in force (a typo in a
ConfigMap must not forget every machine); readiness reports it until the file is fixed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from homelab_common.site import Machine, Site, SiteError, load_site, normalise_mac

log = logging.getLogger("homelab.autoinstall.inventory")


class Inventory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._site = load_site(path)  # SiteError propagates: refuse to start on a bad file
        self._stamp = self._file_stamp()
        self.error: str | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    @property
    def site(self) -> Site:
        """The current site; re-read first if the file changed since the last read."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._site
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._site = load_site(self.path)
                except SiteError as exc:
                    self.error = str(exc)
                    log.error(
                        "site file invalid; keeping the last good inventory",
                        extra={"site_file": str(self.path), "problems": [f"{f}: {m}" for f, m in exc.problems]},
                    )
                else:
                    self.error = None
                    log.info(
                        "site file reloaded", extra={"site_file": str(self.path), "machines": len(self._site.machines)}
                    )
            return self._site

    def problem(self) -> str | None:
        """Why the site file on disk is not in force (for readiness), after checking it for changes."""
        _ = self.site
        return self.error

    def machine(self, mac: str) -> Machine | None:
        """The machine with this MAC in any common notation; None when unknown or not a MAC at all."""
        try:
            wanted = normalise_mac(mac)
        except ValueError:
            return None
        return next((m for m in self.site.machines if m.mac == wanted), None)
