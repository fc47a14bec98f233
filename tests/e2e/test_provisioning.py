"""Provisioning proven with real firmware (issue 3): QEMU machines PXE-boot on a LAN of network namespaces, with
dnsmasq as the home router (DHCP + RAs, no PXE) and our pxe + autoinstall services on the boot server. The
"installer" is the lab's busybox initrd: it fetches its seed, checks it is its own, and reports installed.

All scenarios share one lab (one LAN, one pair of services, one machine per scenario) to keep the runtime down;
scenario 4 reuses scenario 1's machine and installs it first if run alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import pytest

from homelab_bootstrap.lab import (
    DISK_MARKER,
    FAILED_MARKER,
    INSTALLED_MARKER,
    ISO_MARKER,
    Firmware,
    MachineSpec,
    VirtualLab,
    VirtualMachine,
)
from homelab_common.site import load_site

from .conftest import CACHE_DIR, write_site

pytestmark = [pytest.mark.root, pytest.mark.slow]

MACHINES = {
    "bios1": ("52:54:00:77:00:11", "10.77.0.11", Firmware.BIOS_IPXE),
    "uefi1": ("52:54:00:77:00:12", "10.77.0.12", Firmware.UEFI_IPXE),
    "uefipxe1": ("52:54:00:77:00:13", "10.77.0.13", Firmware.UEFI_PXE),
    "pair1": ("52:54:00:77:00:14", "10.77.0.14", Firmware.BIOS_IPXE),
    "pair2": ("52:54:00:77:00:15", "10.77.0.15", Firmware.BIOS_IPXE),
}
STRANGER = MachineSpec("stranger", "52:54:00:77:00:99", Firmware.BIOS_IPXE, memory_mb=256)
INSTALL_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualLab]:
    workdir = tmp_path_factory.mktemp("provisioning")
    site_file = write_site(workdir / "site.yaml", [(name, mac, ip) for name, (mac, ip, _) in MACHINES.items()])
    firmware = {name: fw for name, (_, _, fw) in MACHINES.items()}
    with VirtualLab(load_site(site_file), site_file, workdir, CACHE_DIR, firmware, memory_mb=320) as lab:
        lab.start_homelab()
        yield lab


def machine(lab: VirtualLab, name: str) -> dict[str, object]:
    reply = lab.autoinstall("GET", f"/api/v1/machines/{MACHINES[name][0]}")
    assert reply.status == 200, reply.text()
    result: dict[str, object] = reply.json()
    return result


def boot_scripts_served(lab: VirtualLab) -> dict[str, float]:
    """pxe's ``homelab_pxe_boot_scripts_total`` by action."""
    text = lab.pxe("GET", "/metrics").text()
    found = re.findall(r'^homelab_pxe_boot_scripts_total\{action="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {action: float(value) for action, value in found}


def install(lab: VirtualLab, name: str) -> VirtualMachine:
    """Arm ``name``'s install window, power it on and wait for the installer's verdict, then for autoinstall to say
    installed."""
    vm = lab.machine(name)
    lab.arm(name)
    vm.start()
    marker = vm.wait_for(INSTALLED_MARKER, FAILED_MARKER, timeout=INSTALL_TIMEOUT)
    assert marker == INSTALLED_MARKER, vm.serial()[-3000:]
    assert f"{INSTALLED_MARKER} {name} {MACHINES[name][0]}" in vm.serial()
    assert vm.wait_stopped(60) == 0
    assert machine(lab, name)["state"] == "installed"
    return vm


def test_seabios_with_ipxe_rom_installs(lab: VirtualLab) -> None:
    vm = install(lab, "bios1")
    serial = vm.serial()
    assert "iPXE" in serial
    assert "homelab: installing bios1" in serial


def test_machine_boots_the_assets_stage_output_and_reaches_the_iso_by_its_url(lab: VirtualLab) -> None:
    """The kernel and initrd the VMs boot were extracted from the lab's signed stand-in ISO by the real assets
    stage; the installer finds ``url=`` on its kernel line and fetches a byte range of the ISO through it."""
    served = lab.assets_dir / "amd64"
    release = json.loads((served / "release.json").read_text())
    assert hashlib.sha256((served / "live-server.iso").read_bytes()).hexdigest() == release["sha256"]
    if machine(lab, "bios1")["state"] != "installed":
        install(lab, "bios1")
    serial = lab.machine("bios1").serial()
    iso_url = f"http://{lab.bootserver_ip}:8080/assets/amd64/live-server.iso"
    assert f"{ISO_MARKER} {iso_url}" in serial
    assert lab.pxe("GET", "/assets/amd64/vmlinuz").body == (served / "vmlinuz").read_bytes()


def test_ovmf_with_ipxe_efi_rom_installs(lab: VirtualLab) -> None:
    vm = install(lab, "uefi1")
    serial = vm.serial()
    assert "homelab: installing uefi1" in serial
    assert "Start PXE over IPv4" not in serial  # iPXE's EFI driver booted, not the firmware's own PXE client


def test_ovmf_own_pxe_client_chains_to_ipxe_efi_over_our_tftp(lab: VirtualLab) -> None:
    vm = install(lab, "uefipxe1")
    serial = vm.serial()
    assert "Start PXE over IPv4" in serial
    assert "NBP filename is ipxe.efi" in serial
    assert f"Server IP address is {lab.bootserver_ip}" in serial
    assert "homelab: installing uefipxe1" in serial
    metrics = lab.pxe("GET", "/metrics").text()
    assert re.search(r'^homelab_pxe_tftp_transfers_total\{result="\w+"\} [1-9]', metrics, re.MULTILINE)


def test_installed_machine_boots_from_its_disk_without_reinstalling(lab: VirtualLab) -> None:
    if machine(lab, "bios1")["state"] != "installed":
        install(lab, "bios1")
    before = machine(lab, "bios1")
    events_before = lab.autoinstall("GET", "/api/v1/events?limit=1000").json()
    local_before = boot_scripts_served(lab).get("local", 0.0)
    decision = lab.autoinstall("GET", f"/api/v1/boot/{MACHINES['bios1'][0]}").json()
    assert decision["action"] == "local"
    assert "seed_url" not in decision

    vm = lab.machine("bios1")
    vm.start()
    assert vm.wait_for(DISK_MARKER, "HOMELAB-INSTALLER", timeout=INSTALL_TIMEOUT) == DISK_MARKER, vm.serial()[-3000:]
    vm.stop()
    assert "booting from the local disk" in vm.serial()
    assert boot_scripts_served(lab).get("local", 0.0) == local_before + 1
    after = machine(lab, "bios1")
    assert after["state"] == "installed"
    assert after["generation"] == before["generation"]
    events_after = lab.autoinstall("GET", "/api/v1/events?limit=1000").json()
    assert [e for e in events_after if e not in events_before and e["machine"] == "bios1"] == []


def test_machine_not_in_inventory_gets_no_install_config(lab: VirtualLab) -> None:
    assert lab.autoinstall("GET", f"/api/v1/boot/{STRANGER.mac}").status == 404
    ignored_before = boot_scripts_served(lab).get("ignore", 0.0)
    events_before = lab.autoinstall("GET", "/api/v1/events?limit=1000").json()
    vm = lab.add_machine(STRANGER)
    vm.start()
    # the ignore script exits to the firmware, which tries its blank disk and gives up: the end of this boot
    assert vm.wait_for("No bootable device", "HOMELAB-INSTALLER", timeout=INSTALL_TIMEOUT) == "No bootable device"
    vm.stop()
    serial = vm.serial()
    assert "52:54:00:77:00:99 is not in the inventory - nothing to install" in serial
    assert "HOMELAB-INSTALLER" not in serial
    assert "homelab: installing" not in serial
    assert boot_scripts_served(lab).get("ignore", 0.0) == ignored_before + 1
    events_after = lab.autoinstall("GET", "/api/v1/events?limit=1000").json()
    assert [e for e in events_after if e not in events_before] == []


def test_two_machines_at_once_each_get_their_own_config(lab: VirtualLab) -> None:
    lab.provision(["pair1", "pair2"], timeout=INSTALL_TIMEOUT)  # both powered on together, as task up does
    for name, other in (("pair1", "pair2"), ("pair2", "pair1")):
        vm = lab.machine(name)
        assert vm.wait_stopped(60) == 0
        serial = vm.serial()
        assert f"homelab: installing {name}" in serial
        assert f"{INSTALLED_MARKER} {name} {MACHINES[name][0]}" in serial
        assert MACHINES[other][0].replace(":", "-") not in serial  # never saw the other machine's seed URL
        assert machine(lab, name)["state"] == "installed"
