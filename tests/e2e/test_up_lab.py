"""`task up`'s virtual-lab mode end to end: the same command a user runs, with VMs instead of hardware."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from homelab_common.testing import free_port

from .conftest import CACHE_DIR, REPO, write_site

BOOTSTRAP = Path(sys.executable).parent / "homelab-bootstrap"
ISO_URL = "url=http://10.77.0.2:8080/assets/amd64/live-server.iso"


@dataclass(frozen=True)
class Run:
    pid: int
    returncode: int
    stdout: str
    stderr: str


def up(cwd: Path, *args: str) -> Run:
    """``homelab-bootstrap up --lab`` run in ``cwd`` as if it were the checkout (its tools come from the real one)."""
    env = {**os.environ, "HOMELAB_SOURCE": str(REPO)}
    # a free git port: another `up` may be serving the default 8418 on this machine
    args = ("--git-port", str(free_port()), *args)
    with subprocess.Popen([str(BOOTSTRAP), "up", "--lab", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        stdout, stderr = proc.communicate(timeout=900)
    return Run(proc.pid, proc.returncode, stdout, stderr)


def reuse_lab_cache(state: Path, builds: bool = True) -> None:
    """The e2e tests' kernel package (and with ``builds`` the installer and stand-in release built from it), put
    into this state's lab cache: saves the download and the builds, which the first test here does exercise."""
    target = state / "lab-cache"
    target.mkdir(parents=True)
    patterns = ["linux-image-*.deb", *(["installer-*", "release-*"] if builds else [])]
    for item in (found for pattern in patterns for found in sorted(CACHE_DIR.glob(pattern))):
        if item.is_dir():
            shutil.copytree(item, target / item.name, copy_function=link_or_copy)
        else:
            link_or_copy(item, target / item.name)


def link_or_copy(source: Path | str, target: Path | str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def test_up_in_the_virtual_lab_from_a_clean_checkout_installs_every_machine_and_a_rerun_downloads_nothing(
    tmp_path: Path,
) -> None:
    """`./task up -- --lab` as a new user runs it: in the checkout, relative site and state paths (dnsmasq changes
    directory at start), the installer assets made by the stage from the lab's signed stand-in ISO."""
    write_site(
        tmp_path / "site.yaml",
        [("lab1", "52:54:00:77:10:01", "10.77.0.21"), ("lab2", "52:54:00:77:10:02", "10.77.0.22")],
    )
    state = tmp_path / ".cache" / "homelab"
    reuse_lab_cache(state, builds=False)
    proc = up(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "[1/2] assets: starting" in lines
    assert any(line.startswith("assets: amd64 Ubuntu lab-") and " verified " in line for line in lines)
    assert "[2/2] metal: starting" in lines
    assert "metal: armed and started VM lab1 (52:54:00:77:10:01)" in lines
    assert "metal: lab1 installed" in lines
    assert "metal: lab2 installed" in lines
    assert any(line.startswith("[2/2] metal: done in ") for line in lines)
    assert "cannot install Ubuntu or k3s" in lines[-1]
    timings = json.loads((state / "up-timings.json").read_text())
    for stage in ("assets", "metal"):
        assert timings["stages"][stage]["skipped"] is False
        assert timings["stages"][stage]["seconds"] > 0
    for name in ("lab1", "lab2"):
        serial = (state / "lab" / "machines" / name / "serial-0.log").read_text(errors="replace")
        assert ISO_URL in serial  # booted with the served ISO on its kernel line, and reached it
        assert f"HOMELAB-INSTALLER: ISO range ok {ISO_URL.removeprefix('url=')}" in serial
    assert not lab_namespaces(proc.pid), "the lab's network namespaces outlived `task up`"

    # a rerun: nothing downloaded, and the lab starts afresh (blank disks, so nothing is remembered as installed)
    again = up(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert any(line.startswith("assets: amd64 ") and line.endswith("nothing downloaded (cached)") for line in lines)
    assert "metal: lab1 installed" in lines
    assert "metal: lab2 installed" in lines


def test_a_lab_error_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site.yaml", [("lab1", "52:54:00:77:10:21", "10.77.0.21")])
    site.write_text(site.read_text().replace("role: server}", "role: server, arch: arm64}"))
    reuse_lab_cache(tmp_path / ".cache" / "homelab")
    proc = up(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == "up: machine lab1: arch arm64 cannot run in the virtual lab (amd64 only)\n"


def lab_namespaces(pid: int) -> set[str]:
    """The lab namespaces of the run with this PID (others' concurrent runs have their own PID in the name)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith(f"hl-lab-{pid}-")}
