"""The virtual lab: the site's machines as QEMU VMs on a LAN of network namespaces, booting from our services.

Used by ``task up``'s virtual-lab mode (for people without spare machines) and by ``tests/e2e`` (which proves
provisioning with real firmware), so both exercise one piece of code. Needs root and the Debian packages in
``scripts/test-debs.txt``. Entry point: :class:`VirtualLab`.
"""

from homelab_bootstrap.lab.commands import LabError
from homelab_bootstrap.lab.installer import DISK_MARKER, FAILED_MARKER, INSTALLED_MARKER, ISO_MARKER, build_installer
from homelab_bootstrap.lab.lab import VirtualLab, machine_specs
from homelab_bootstrap.lab.network import LabNetwork, sweep_stale
from homelab_bootstrap.lab.qemu import Firmware, MachineSpec, VirtualMachine, accelerator
from homelab_bootstrap.lab.release import prepare_assets

__all__ = [
    "DISK_MARKER",
    "FAILED_MARKER",
    "INSTALLED_MARKER",
    "ISO_MARKER",
    "Firmware",
    "LabError",
    "LabNetwork",
    "MachineSpec",
    "VirtualLab",
    "VirtualMachine",
    "accelerator",
    "build_installer",
    "machine_specs",
    "prepare_assets",
    "sweep_stale",
]
