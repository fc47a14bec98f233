"""`task up`'s virtual-lab mode end to end: the same command a user runs, with VMs instead of hardware."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from homelab_common.testing import free_port

from .conftest import write_site

BOOTSTRAP = Path(sys.executable).parent / "homelab-bootstrap"


def test_up_in_the_virtual_lab_installs_every_machine_and_says_where_it_stops(tmp_path: Path) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        [("lab1", "52:54:00:77:10:01", "10.77.0.21"), ("lab2", "52:54:00:77:10:02", "10.77.0.22")],
    )
    state = tmp_path / "state"
    before = lab_namespaces()
    proc = subprocess.run(
        # a free git port: another `up` may be serving the default 8418 on this machine
        [str(BOOTSTRAP), "up", "--lab", "--site", str(site), "--state", str(state), "--git-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "[1/1] metal: starting" in lines
    assert "metal: armed and started VM lab1 (52:54:00:77:10:01)" in lines
    assert "metal: lab1 installed" in lines
    assert "metal: lab2 installed" in lines
    assert any(line.startswith("[1/1] metal: done in ") for line in lines)
    assert "cannot install Ubuntu or k3s" in lines[-1]
    timings = json.loads((state / "up-timings.json").read_text())
    assert timings["stages"]["metal"]["skipped"] is False
    assert timings["stages"]["metal"]["seconds"] > 0
    assert lab_namespaces() <= before, "the lab's network namespaces outlived `task up`"


def lab_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("hl-lab-")}
