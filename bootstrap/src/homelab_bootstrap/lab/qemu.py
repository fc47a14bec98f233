"""QEMU machines on the lab LAN, booting the way real hardware does: from the network first, then from the disk.

Three firmware flavours cover what users' machines do (see :class:`Firmware`). Each machine has a virtio NIC on
its own tap, a blank raw disk, and its serial port written to a log file, which is how the lab watches it boot.
Accelerator: KVM when it really works (a probe boots a boot sector under KVM), else TCG; override with
``HOMELAB_LAB_ACCEL=kvm|tcg``.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from homelab_bootstrap.lab.commands import LabError, LabProcess, netns_exec, require_tool
from homelab_bootstrap.lab.installer import DISK_MARKER, boot_sector
from homelab_bootstrap.lab.network import LabNetwork

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class Firmware(enum.StrEnum):
    """How a machine network-boots."""

    #: SeaBIOS, the NIC's option ROM is iPXE (Debian's ipxe-qemu): the legacy BIOS PC.
    BIOS_IPXE = "bios-ipxe"
    #: OVMF (UEFI), the NIC's option ROM is iPXE's EFI driver.
    UEFI_IPXE = "uefi-ipxe"
    #: OVMF's own EDK2 PXE client (no option ROM): what most UEFI PCs do; it must chain to ipxe.efi over TFTP.
    UEFI_PXE = "uefi-pxe"


@dataclass(frozen=True)
class MachineSpec:
    """One virtual machine: the site file's name and MAC plus how it boots."""

    name: str
    mac: str
    firmware: Firmware = Firmware.BIOS_IPXE
    memory_mb: int = 384
    disk_mb: int = 64

    def __post_init__(self) -> None:
        if not _MAC.match(self.mac):
            raise LabError(f"machine {self.name}: mac {self.mac!r} is not a lowercase colon-separated MAC")


@functools.cache
def accelerator() -> str:
    """``kvm`` when KVM runs a guest correctly here, else ``tcg`` (``HOMELAB_LAB_ACCEL`` overrides)."""
    forced = os.environ.get("HOMELAB_LAB_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced
    if forced:
        raise LabError(f"HOMELAB_LAB_ACCEL={forced!r}: use kvm or tcg")
    return "kvm" if _kvm_works() else "tcg"


def _kvm_works(timeout: float = 10.0) -> bool:
    """Boot a boot sector under KVM; a warning about missing host CPU features means an emulated, unusable KVM."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False
    broken = b"doesn't support requested feature"
    with tempfile.TemporaryDirectory(prefix="hl-lab-kvm-") as tmp:
        disk, serial, errors = Path(tmp) / "disk.raw", Path(tmp) / "serial.log", Path(tmp) / "stderr.log"
        disk.write_bytes(boot_sector())
        cmd = [qemu, "-accel", "kvm", "-nodefaults", "-display", "none", "-m", "16", "-machine", "pc",
               "-serial", f"file:{serial}", "-drive", f"file={disk},format=raw,if=virtio"]  # fmt: skip
        with errors.open("wb") as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if broken in errors.read_bytes():
                    return False
                if serial.exists() and DISK_MARKER in serial.read_text(errors="replace"):
                    return True
                time.sleep(0.05)
            return False
        finally:
            proc.kill()
            proc.wait()


def qemu_command(spec: MachineSpec, tap: str, disk: Path, serial_log: Path, ovmf_vars: Path | None) -> list[str]:
    """The QEMU command line for ``spec``: no display, no default devices, NIC first in the boot order."""
    accel = accelerator()
    cmd = ["qemu-system-x86_64", "-name", spec.name, "-accel", accel, "-m", str(spec.memory_mb), "-smp", "1",
           "-nodefaults", "-nographic", "-monitor", "none", "-serial", f"file:{serial_log}", "-no-reboot"]  # fmt: skip
    if spec.firmware is Firmware.BIOS_IPXE:
        cmd += ["-machine", "pc"]
    else:
        if ovmf_vars is None:
            raise LabError(f"machine {spec.name}: UEFI firmware needs a copy of {OVMF_VARS}")
        cmd += ["-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={ovmf_vars}"]  # fmt: skip
    nic = f"virtio-net-pci,netdev=n0,mac={spec.mac},bootindex=1"
    if spec.firmware is Firmware.UEFI_PXE:
        nic += ",romfile="
    cmd += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no", "-device", nic,
            "-drive", f"file={disk},format=raw,if=none,id=d0",
            "-device", "virtio-blk-pci,drive=d0,bootindex=2"]  # fmt: skip
    return cmd


class VirtualMachine:
    """A machine of the lab: its disk and NVRAM persist across :meth:`start` calls, like real hardware."""

    def __init__(self, spec: MachineSpec, network: LabNetwork, workdir: Path) -> None:
        require_tool("qemu-system-x86_64", "qemu-system-x86")
        self.spec = spec
        self.network = network
        self.workdir = workdir / spec.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = self.workdir / "disk.raw"
        self.ovmf_vars: Path | None = None
        self.process: LabProcess | None = None
        if spec.firmware is not Firmware.BIOS_IPXE:
            if not OVMF_CODE.exists():
                raise LabError(f"{OVMF_CODE} not found: install the Debian package ovmf")
            self.ovmf_vars = self.workdir / "OVMF_VARS.fd"
        self.reset()
        self.tap = network.add_tap()
        self.boots = 0
        self.serial_log = self.workdir / "serial-0.log"

    def reset(self) -> None:
        """Back to factory state: a blank disk and, for UEFI, empty NVRAM (boot entries are stored there)."""
        if self.process is not None and self.process.alive():
            raise LabError(f"machine {self.spec.name} is running: stop it before resetting it")
        with self.disk.open("wb") as handle:
            handle.truncate(self.spec.disk_mb * 1024 * 1024)
        if self.ovmf_vars is not None:
            shutil.copyfile(OVMF_VARS, self.ovmf_vars)

    def start(self) -> None:
        """Power on (a fresh serial log per boot: ``serial-<n>.log``)."""
        if self.process is not None:
            if self.process.alive():
                raise LabError(f"machine {self.spec.name} is already running")
            self.process.stop()  # reaps it and closes its log
        self.serial_log = self.workdir / f"serial-{self.boots}.log"
        self.serial_log.write_bytes(b"")
        cmd = qemu_command(self.spec, self.tap, self.disk, self.serial_log, self.ovmf_vars)
        self.process = LabProcess(
            f"qemu {self.spec.name}",
            netns_exec(self.network.lan_ns, cmd),
            self.workdir / f"qemu-{self.boots}.log",
            hint="see the QEMU log; is qemu-system-x86 (and ovmf / ipxe-qemu) installed?",
        )
        self.started_at = self.process.started_at
        self.boots += 1

    def serial(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def wait_for(self, *markers: str, timeout: float) -> str:
        """Wait until the serial console shows one of ``markers``; return it. LabError on timeout or exit.

        The marker's line is awaited to its end (the reason after FAILED arrives a moment later), for at most three
        seconds: a marker printed without a newline still counts."""
        deadline = time.monotonic() + timeout
        seen: dict[str, float] = {}
        while True:
            text = self.serial()
            for marker in markers:
                at = text.find(marker)
                if at >= 0 and ("\n" in text[at:] or time.monotonic() - seen.setdefault(marker, time.monotonic()) > 3):
                    return marker
            if self.process is None or not self.process.alive():
                time.sleep(0.2)  # the last lines may land just before the exit
                text = self.serial()
                found = [marker for marker in markers if marker in text]
                if found:
                    return found[0]
                raise LabError(f"machine {self.spec.name} stopped before {markers}; serial:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise LabError(f"machine {self.spec.name}: none of {markers} within {timeout:.0f}s; "
                               f"serial:\n{text[-3000:]}")  # fmt: skip
            time.sleep(0.2)

    def wait_stopped(self, timeout: float) -> int:
        """Wait for the machine to power off; its QEMU exit code."""
        if self.process is None:
            raise LabError(f"machine {self.spec.name} was never started")
        code = self.process.wait(timeout)
        if code is None:
            raise LabError(f"machine {self.spec.name} still running after {timeout:.0f}s; serial:\n"
                           f"{self.serial()[-3000:]}")  # fmt: skip
        return code

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
