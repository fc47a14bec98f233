"""Prometheus metrics (process-wide, like the shared HTTP metrics: one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MACHINES = Gauge("homelab_autoinstall_machines", "Machines in the inventory by install state", ["state"])
SEED_FETCHES = Counter("homelab_autoinstall_seed_fetches_total", "Seed files served, by file", ["file"])
REFUSALS = Counter(
    "homelab_autoinstall_seed_refusals_total",
    "Requests refused (403): seed requests, and management requests from untrusted sources; by reason",
    ["reason"],
)
INSTALLS = Counter("homelab_autoinstall_installs_completed_total", "Installs reported complete by the installer")
INSTALLER_EVENTS = Counter(
    "homelab_autoinstall_installer_events_total", "Installer progress events received, by result", ["result"]
)
REINSTALLS = Counter("homelab_autoinstall_reinstalls_total", "Reinstall requests accepted")
ALARMS = Counter(
    "homelab_autoinstall_seed_alarms_total",
    "Install windows burned because a machine's user-data was fetched a second time (someone else has it)",
)
ARMED = Counter("homelab_autoinstall_windows_armed_total", "Install windows armed")
WAKES = Counter("homelab_autoinstall_wol_sent_total", "Wake-on-LAN magic packets sent")

# Known label values start at 0: rates, alerts and dashboards then see a series before the first event.
for _reason in ("unknown-machine", "bad-token", "wrong-state", "source-ip", "unknown-file", "untrusted-source"):
    REFUSALS.labels(_reason)
for _result in ("success", "fail", "warn", "none"):
    INSTALLER_EVENTS.labels(_result)
for _state in ("pending", "installing", "installed"):
    MACHINES.labels(_state)
