from __future__ import annotations

from pathlib import Path

import pytest
from pxe_pcap import Datagram, dhcp_datagrams, reference_dir

CAPTURES = ["seabios-ipxe-rom.pcap", "ovmf-ipxe-efi-rom.pcap", "ovmf-edk2-pxe-then-ipxe.pcap"]


def capture(name: str) -> list[Datagram]:
    path = reference_dir() / name
    if not path.exists():
        pytest.skip(f"reference capture {path} is missing (shared/reference beside the checkout)")
    return dhcp_datagrams(path)


def all_dhcp() -> list[tuple[str, Datagram]]:
    found = []
    for name in CAPTURES:
        path: Path = reference_dir() / name
        if path.exists():
            found += [(name, d) for d in dhcp_datagrams(path)]
    return found
