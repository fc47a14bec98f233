"""The test site: a first server, a joining server (arm64, disk by serial) and an agent."""

from __future__ import annotations

import copy
from typing import Any

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn0dWkYkYf7bYV3N2W5r7mB0wq1eHj2sH0o8s5s2Jx1 admin@laptop"
SITE: dict[str, Any] = {
    "domain": "home.arpa",
    "timezone": "Europe/Berlin",
    "lan": {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "dns": ["10.77.0.1"], "interface": "eth0"},
    "ssh_keys": [KEY],
    "k3s": {"version": "v1.33.5+k3s1", "api_vip": "10.77.0.40", "lb_pool": "10.77.0.50-10.77.0.70"},
    "machines": [
        {"name": "node1", "mac": "52:54:00:12:34:56", "ip": "10.77.0.11", "disk": "/dev/vda", "role": "server"},
        {"name": "node2", "mac": "52:54:00:12:34:57", "ip": "10.77.0.12", "disk": "serial:WD-1234", "arch": "arm64"},
        {"name": "node3", "mac": "52-54-00-12-34-58", "ip": "10.77.0.13", "disk": "/dev/sda", "role": "agent"},
    ],
}


def site_data() -> dict[str, Any]:
    return copy.deepcopy(SITE)
