"""The virtual lab's pure parts, without root: the installer archive and boot sector, module dependencies, the QEMU
and dnsmasq command lines, the site → machines mapping, and error messages that say what to do."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from homelab_bootstrap.lab import qemu
from homelab_bootstrap.lab.commands import LabError, run
from homelab_bootstrap.lab.dnsmasq import proxy_pxe_args, router_args
from homelab_bootstrap.lab.installer import DISK_MARKER, _newc, boot_sector, module_closure
from homelab_bootstrap.lab.lab import machine_specs, pick_bootserver_ip
from homelab_bootstrap.lab.qemu import Firmware, MachineSpec, qemu_command
from homelab_common.site import Site


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes, int, int]]:
    entries, offset = {}, 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body_start = name_start + namesize + (-(name_start + namesize) % 4)
        body = data[body_start : body_start + filesize]
        offset = body_start + filesize + (-(body_start + filesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], body, fields[9], fields[10])


def test_newc_archive_holds_files_dirs_and_device_nodes() -> None:
    archive = _newc([
        ("dev", stat.S_IFDIR | 0o755, b"", 0, 0),
        ("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1),
        ("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n", 0, 0),
    ])  # fmt: skip
    assert len(archive) % 4 == 0
    entries = parse_newc(archive)
    assert entries["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\n", 0, 0)
    assert entries["dev/console"][0] == stat.S_IFCHR | 0o600
    assert entries["dev/console"][2:] == (5, 1)


def test_boot_sector_is_a_bootable_mbr_announcing_the_disk() -> None:
    sector = boot_sector()
    assert len(sector) == 512
    assert sector[510:] == b"\x55\xaa"
    assert DISK_MARKER.encode() in sector
    message_at = 0x7C00 + sector.index(b"\r\n" + DISK_MARKER.encode())
    assert sector[5:8] == b"\xbe" + message_at.to_bytes(2, "little")  # mov si, <message>


def fake_module(root: Path, rel: str, depends: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0")


def test_module_closure_lists_dependencies_first_and_skips_builtins(tmp_path: Path) -> None:
    fake_module(tmp_path, "kernel/drivers/net/virtio_net.ko", "virtio_ring,virtio,net_failover")
    fake_module(tmp_path, "kernel/drivers/net/net_failover.ko", "failover")
    fake_module(tmp_path, "kernel/net/core/failover.ko", "")
    fake_module(tmp_path, "kernel/drivers/virtio/virtio_ring.ko", "virtio")
    fake_module(tmp_path, "kernel/drivers/virtio/virtio.ko", "")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\n")
    order = [ko.name for ko in module_closure(tmp_path, ("virtio_net",))]
    assert order == ["virtio_ring.ko", "failover.ko", "net_failover.ko", "virtio_net.ko"]


def test_missing_module_is_named_with_who_needs_it(tmp_path: Path) -> None:
    fake_module(tmp_path, "kernel/drivers/net/virtio_net.ko", "net_failover")
    with pytest.raises(LabError, match=r"net_failover \(needed by virtio_net\) is not in the package"):
        module_closure(tmp_path, ("virtio_net",))


@pytest.fixture
def tcg(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HOMELAB_LAB_ACCEL", "tcg")
    qemu.accelerator.cache_clear()
    yield
    qemu.accelerator.cache_clear()


@pytest.mark.usefixtures("tcg")
def test_firmwares_own_pxe_client_gets_a_nic_without_option_rom(tmp_path: Path) -> None:
    spec = MachineSpec("n1", "52:54:00:00:00:01", Firmware.UEFI_PXE)
    cmd = " ".join(qemu_command(spec, "tap1", tmp_path / "d", tmp_path / "s", tmp_path / "vars"))
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,bootindex=1,romfile=" in cmd
    assert "OVMF_CODE_4M.fd" in cmd
    assert "-accel tcg" in cmd


@pytest.mark.usefixtures("tcg")
def test_ipxe_rom_machines_keep_the_option_rom_and_boot_network_before_disk(tmp_path: Path) -> None:
    for firmware in (Firmware.BIOS_IPXE, Firmware.UEFI_IPXE):
        spec = MachineSpec("n1", "52:54:00:00:00:01", firmware)
        cmd = qemu_command(spec, "tap1", tmp_path / "d", tmp_path / "s", tmp_path / "vars")
        nic = cmd[cmd.index("-device") + 1]
        assert "romfile" not in nic
        assert "bootindex=1" in nic
        assert "virtio-blk-pci,drive=d0,bootindex=2" in cmd
        assert ("pflash" in " ".join(cmd)) is (firmware is Firmware.UEFI_IPXE)


def test_unknown_accelerator_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_LAB_ACCEL", "hvf")
    qemu.accelerator.cache_clear()
    with pytest.raises(LabError, match="HOMELAB_LAB_ACCEL='hvf': use kvm or tcg"):
        qemu.accelerator()
    qemu.accelerator.cache_clear()


def test_machine_spec_rejects_a_bad_mac() -> None:
    with pytest.raises(LabError, match="machine n1: mac '52-54-00-00-00-01'"):
        MachineSpec("n1", "52-54-00-00-00-01")


def test_home_router_serves_dhcp_and_router_advertisements_but_no_pxe(tmp_path: Path) -> None:
    args = router_args(tmp_path, ipaddress.IPv4Network("10.77.0.0/24"), ipaddress.IPv4Address("10.77.0.1"),
                       [ipaddress.IPv4Address("10.77.0.1")], ipaddress.IPv6Network("fd77::/64"))  # fmt: skip
    assert "--enable-ra" in args
    assert "--dhcp-range=fd77::,ra-only" in args
    assert "--dhcp-range=10.77.0.128,10.77.0.253,255.255.255.0,1h" in args
    assert not [a for a in args if a.startswith(("--dhcp-boot", "--pxe-service", "--enable-tftp", "--dhcp-match"))]


def test_dnsmasq_baseline_sends_ipxe_clients_to_the_script_and_firmware_to_ipxe(tmp_path: Path) -> None:
    url = "http://10.77.0.2:8080/boot.ipxe?mac=${mac}"
    args = proxy_pxe_args(tmp_path, ipaddress.IPv4Network("10.77.0.0/24"), tmp_path, url)
    assert "--dhcp-range=10.77.0.0,proxy,255.255.255.0" in args
    assert f"--pxe-service=tag:ipxe,x86-64_EFI,script,{url}" in args
    assert "--pxe-service=tag:!ipxe,x86PC,iPXE,undionly.kpxe" in args


def site(**machine: object) -> Site:
    return Site.model_validate({
        "lan": {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "dns": ["10.77.0.2"]},
        "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4bWxh lab"],
        "machines": [{"name": "n1", "mac": "52-54-00-00-00-01", "ip": "10.77.0.3", **machine}],
    })  # fmt: skip


def test_site_machines_become_vms_with_the_chosen_firmware() -> None:
    specs = machine_specs(site(), {"n1": Firmware.UEFI_PXE}, memory_mb=300)
    assert specs == [MachineSpec("n1", "52:54:00:00:00:01", Firmware.UEFI_PXE, 300)]


def test_arm64_machines_are_refused_by_name() -> None:
    with pytest.raises(LabError, match="machine n1: arch arm64 cannot run in the virtual lab"):
        machine_specs(site(arch="arm64"))


def test_boot_server_takes_the_first_address_nobody_else_has() -> None:
    assert pick_bootserver_ip(site()) == ipaddress.IPv4Address("10.77.0.4")


def test_failed_command_names_itself_and_what_to_do() -> None:
    with pytest.raises(LabError, match=r"ls /nonexistent-dir failed \(exit 2: .*\): are you root\?"):
        run(["ls", "/nonexistent-dir"], hint="are you root?")
    with pytest.raises(LabError, match=r"no-such-tool-xyz not found .*: install it"):
        run(["no-such-tool-xyz"], hint="install it")
