"""PXE boot latency: time from QEMU start to the machine's boot script fetched, our stack vs dnsmasq's.

Ours: pxe's proxyDHCP + TFTP + HTTP boot script. Baseline (the anchor project's stack): dnsmasq's proxyDHCP +
TFTP (``--dhcp-range=<net>,proxy --pxe-service=...``) sending iPXE to the same pxe HTTP boot script (pxe runs with
its DHCP and TFTP off). Same run, same LAN, same VM definition (blank disk and NVRAM reset before every boot),
stacks alternated per round. "Fetched" = iPXE prints the script's first line (``homelab: installing <name>``) on
the serial console, polled every 20 ms. Each firmware path is measured: OVMF's own PXE client (proxyDHCP, then
TFTP of ipxe.efi, then iPXE's own DHCP) and SeaBIOS with the iPXE ROM (proxyDHCP only).

Run as root: ``uv run --frozen --no-sync python benchmarks/pxe_boot.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from homelab_bootstrap.lab import Firmware, VirtualLab, VirtualMachine, accelerator
from homelab_common.site import load_site

REPO = Path(__file__).resolve().parents[1]
SITE = """\
lan: {subnet: 10.77.0.0/24, gateway: 10.77.0.1, dns: [10.77.0.1]}
ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4bWxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxh bench"]
machines:
  - {name: benchuefi, mac: "52:54:00:77:0b:01", ip: 10.77.0.31, disk: /dev/vda}
  - {name: benchbios, mac: "52:54:00:77:0b:02", ip: 10.77.0.32, disk: /dev/vda}
"""
FIRMWARE = {"benchuefi": Firmware.UEFI_PXE, "benchbios": Firmware.BIOS_IPXE}


def time_to_boot_script(vm: VirtualMachine, timeout: float = 180.0) -> float:
    marker = f"homelab: installing {vm.spec.name}"
    vm.reset()
    vm.start()
    try:
        while True:
            elapsed = time.monotonic() - vm.started_at
            if marker in vm.serial():
                return elapsed
            if elapsed > timeout:
                raise SystemExit(
                    f"{vm.spec.name}: no boot script within {timeout:.0f}s; serial:\n{vm.serial()[-2000:]}"
                )
            time.sleep(0.02)
    finally:
        vm.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="boots per stack and firmware (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("pxe_boot benchmark: needs root (network namespaces, tap devices, ports 67/69)", file=sys.stderr)
        return 2
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pxe-bench-") as tmp:
        workdir = Path(tmp)
        site_file = workdir / "site.yaml"
        site_file.write_text(SITE)
        cache = REPO / ".cache" / "lab"
        with VirtualLab(load_site(site_file), site_file, workdir, cache, FIRMWARE, memory_mb=256) as lab:
            vms = [lab.machine(name) for name in FIRMWARE]
            for round_no in range(args.runs):
                for stack in ("ours", "dnsmasq"):
                    if stack == "ours":
                        lab.start_homelab()
                    else:
                        lab.start_homelab(dhcp=False, tftp=False)
                        lab.start_dnsmasq_proxy()
                    for vm in vms:
                        seconds = time_to_boot_script(vm)
                        results.setdefault((vm.spec.firmware.value, stack), []).append(seconds)
                        print(
                            f"round {round_no + 1} {stack:8} {vm.spec.firmware.value:10} {seconds:6.2f} s", flush=True
                        )
                    lab.stop_boot_servers()
    print(f"\nPXE boot: seconds from QEMU start to boot script fetched (accelerator {accelerator()}, "
          f"{args.runs} runs each, medians)")  # fmt: skip
    print(f"{'firmware':12} {'ours':>8} {'dnsmasq':>8} {'ratio':>7}   runs ours | dnsmasq")
    for firmware in FIRMWARE.values():
        ours, base = results[(firmware.value, "ours")], results[(firmware.value, "dnsmasq")]
        ratio = statistics.median(ours) / statistics.median(base)
        print(f"{firmware.value:12} {statistics.median(ours):8.2f} {statistics.median(base):8.2f} {ratio:7.3f}   "
              f"{' '.join(f'{x:.2f}' for x in ours)} | {' '.join(f'{x:.2f}' for x in base)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
