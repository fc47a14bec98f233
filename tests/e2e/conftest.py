"""Shared set-up of the end-to-end tests: root check, the installer cache, a site file for the lab."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The installer (kernel package + initrd) is cached here across runs, keyed by its inputs.
CACHE_DIR = REPO / ".cache" / "lab"

SITE_TEMPLATE = """\
domain: home.arpa
timezone: Etc/UTC
lan: {{subnet: 10.77.0.0/24, gateway: 10.77.0.1, dns: [10.77.0.1], interface: eth0}}
ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4bWxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxh lab@test"]
k3s: {{version: v1.33.5+k3s1}}
machines:
{machines}
"""


def write_site(path: Path, machines: list[tuple[str, str, str]]) -> Path:
    """A site file with ``(name, mac, ip)`` machines, the first a k3s server, the rest agents."""
    lines = [
        f"  - {{name: {name}, mac: '{mac}', ip: {ip}, disk: /dev/vda, role: {'server' if i == 0 else 'agent'}}}"
        for i, (name, mac, ip) in enumerate(machines)
    ]
    path.write_text(SITE_TEMPLATE.format(machines="\n".join(lines)))
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: network namespaces, tap devices, DHCP/TFTP ports (CI runs as root)")
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("root"):
            item.add_marker(skip)
