"""The virtual lab on its own: namespaces that never collide or leak, dnsmasq as the home router reaching a QEMU
guest, and the installer initrd fetching and checking its seed — with dnsmasq's proxyDHCP and a static seed
server standing in for our services, so these tests say whether the lab itself works."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from homelab_autoinstall.userdata import ImageArchive, image_commands
from homelab_bootstrap.lab import (
    FAILED_MARKER,
    INSTALLED_MARKER,
    LabNetwork,
    VirtualLab,
    sweep_stale,
)
from homelab_bootstrap.lab.network import PREFIX, list_namespaces
from homelab_common.site import load_site

from .conftest import CACHE_DIR, write_site
from .static_seed import StaticSeedServer

pytestmark = [pytest.mark.root, pytest.mark.slow]

GOOD = ("good1", "52:54:00:77:01:01", "10.77.0.21")
LIAR = ("liar1", "52:54:00:77:01:02", "10.77.0.22")
IMAGES = ("images1", "52:54:00:77:01:03", "10.77.0.23")


def test_parallel_labs_get_distinct_namespaces_and_leave_nothing_behind() -> None:
    with LabNetwork() as first, LabNetwork() as second:
        names = set(list_namespaces())
        assert {first.lan_ns, first.router_ns, first.boot_ns, second.lan_ns} <= names
        assert first.run_id != second.run_id
        tap = first.add_tap()
        links = subprocess.run(["ip", "-n", first.lan_ns, "-o", "link"], capture_output=True, text=True, check=True)
        assert f"{tap}:" in links.stdout
        assert "master br0" in links.stdout
    left = set(list_namespaces())
    assert not {first.lan_ns, first.router_ns, first.boot_ns, second.lan_ns, second.boot_ns} & left


def test_sweep_removes_namespaces_of_dead_runs_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}{dead.pid}-abcdef-lan"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    with LabNetwork() as live:
        removed = sweep_stale()
        names = list_namespaces()
        assert stale in removed
        assert stale not in names
        assert live.lan_ns in names


@pytest.fixture(scope="module")
def static_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VirtualLab, StaticSeedServer]]:
    workdir = tmp_path_factory.mktemp("static-lab")
    site_file = write_site(workdir / "site.yaml", [GOOD, LIAR, IMAGES])
    with VirtualLab(load_site(site_file), site_file, workdir, CACHE_DIR, memory_mb=256) as lab:
        seed = StaticSeedServer(lab.network.boot_ns, str(lab.bootserver_ip))
        seed.add_assets(lab.assets_dir)
        with seed:
            lab.start_dnsmasq_proxy(f"{seed.base}/boot.ipxe?mac=${{mac}}")
            yield lab, seed


def test_router_dhcp_and_proxy_boot_reach_the_installer_which_reports_installed(
    static_lab: tuple[VirtualLab, StaticSeedServer],
) -> None:
    lab, seed = static_lab
    name, mac, _ = GOOD
    seed_url = seed.add_machine(mac, name)
    vm = lab.machine(name)
    vm.start()
    assert vm.wait_for(INSTALLED_MARKER, FAILED_MARKER, timeout=240) == INSTALLED_MARKER, vm.serial()[-2000:]
    assert f"{INSTALLED_MARKER} {name} {mac}" in vm.serial()
    assert vm.wait_stopped(30) == 0
    assert ("POST", seed_url.removeprefix(seed.base) + "installed") in seed.requests
    assert lab.router is not None
    router_log = lab.router.output()
    assert "DHCPACK(eth0) " in router_log
    assert mac in router_log
    # the home router knows nothing of PXE: no boot file, no PXE vendor options in anything it sent
    sent = [line for line in router_log.splitlines() if " sent size:" in line or "bootfile name" in line]
    assert sent
    assert not [line for line in sent if "option: 43 " in line or "option: 60 " in line or "bootfile" in line]
    assert (lab.workdir / "machines" / name / "disk.raw").read_bytes()[510:512] == b"\x55\xaa"


def test_installer_refuses_user_data_for_another_hostname(static_lab: tuple[VirtualLab, StaticSeedServer]) -> None:
    lab, seed = static_lab
    name, mac, _ = LIAR
    seed_url = seed.add_machine(mac, name, user_data_hostname="someone-else")
    vm = lab.machine(name)
    vm.start()
    assert vm.wait_for(INSTALLED_MARKER, FAILED_MARKER, timeout=240) == FAILED_MARKER
    assert "user-data hostname 'someone-else' is not meta-data's local-hostname 'liar1'" in vm.serial()
    assert ("POST", seed_url.removeprefix(seed.base) + "installed") not in seed.requests
    assert (lab.workdir / "machines" / name / "disk.raw").read_bytes()[:512] == bytes(512)


def test_installer_fetches_the_day0_image_archives_and_checks_their_digests(
    static_lab: tuple[VirtualLab, StaticSeedServer],
) -> None:
    """autoinstall's own late-commands (image_commands) name two archives; one does not match its sha256."""
    lab, seed = static_lab
    name, mac, _ = IMAGES
    seed_url = seed.add_machine(mac, name)
    good, bad = b"an OCI archive\n" * 100_000, b"not what the index says\n" * 1000
    seed.files["/images/good.tar"], seed.files["/images/bad.tar"] = good, bad
    archives = (
        ImageArchive("good.tar", hashlib.sha256(good).hexdigest()),
        ImageArchive("bad.tar", hashlib.sha256(b"the archive that was built").hexdigest()),
    )
    autoinstall = {"version": 1, "identity": {"hostname": name, "username": "homelab"}}
    autoinstall["late-commands"] = image_commands(seed_url, archives)
    seed.files[seed_url.removeprefix(seed.base) + "user-data"] = (
        "#cloud-config\n" + yaml.safe_dump({"autoinstall": autoinstall}, width=100000)
    ).encode()
    vm = lab.machine(name)
    vm.start()
    assert vm.wait_for(INSTALLED_MARKER, FAILED_MARKER, timeout=240) == FAILED_MARKER, vm.serial()[-2000:]
    serial = vm.serial()
    assert "image good.tar verified" in serial
    assert f"image bad.tar: sha256 {hashlib.sha256(bad).hexdigest()}, user-data says {archives[1].sha256}" in serial
    assert ("GET", "/images/good.tar") in seed.requests
    assert ("GET", "/images/bad.tar") in seed.requests
    assert ("POST", seed_url.removeprefix(seed.base) + "installed") not in seed.requests


def test_lab_is_torn_down_when_the_block_raises(tmp_path: Path) -> None:
    site_file = write_site(tmp_path / "site.yaml", [GOOD])
    lab = VirtualLab(load_site(site_file), site_file, tmp_path, CACHE_DIR)

    def use_and_fail() -> None:
        with lab:
            lab.machine(GOOD[0])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_and_fail()
    assert not any(name.startswith(lab.network.run_id) for name in list_namespaces())
