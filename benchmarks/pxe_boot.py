"""PXE boot latency: time from QEMU start to the machine's boot script fetched, our stack vs dnsmasq's.

Ours: pxe's proxyDHCP + TFTP + HTTP boot script. Baseline (the anchor project's stack): dnsmasq's proxyDHCP +
TFTP (``--dhcp-range=<net>,proxy --pxe-service=...``) sending iPXE to the same pxe HTTP boot script (pxe runs with
its DHCP and TFTP off). Same run, same LAN, same VM definition (blank disk and NVRAM reset before every boot),
stacks alternated per round, one unmeasured warm-up boot per machine first (the router's dnsmasq delays its first
offer to a new MAC by ~3 s while it pings the address). "Fetched" = iPXE prints the script's first line
(``homelab: installing <name>``) on the serial console, polled every 20 ms. A second figure isolates the part the
stacks differ in: from the machine's first DHCPDISCOVER to its ``GET /boot.ipxe``, timestamped by a packet socket
on the machine's tap. Each firmware path is measured: OVMF's own PXE client (proxyDHCP, then TFTP of ipxe.efi, then
iPXE's own DHCP) and SeaBIOS with the iPXE ROM (proxyDHCP only).

Run as root: ``uv run --frozen --no-sync python benchmarks/pxe_boot.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from homelab_bootstrap.lab import Firmware, VirtualLab, VirtualMachine, accelerator
from homelab_bootstrap.lab.netns import call_in_namespace
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


class TapWatch:
    """Timestamps of the first DHCPDISCOVER from, and first ``GET /boot.ipxe`` by, the machine on ``tap``."""

    def __init__(self, namespace: str, tap: str) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
            sock.bind((tap, 0))
            sock.settimeout(0.2)
            return sock

        self.sock = call_in_namespace(namespace, open_socket)
        self.discover: float | None = None
        self.script: float | None = None
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            now = time.monotonic()
            if len(frame) < 42 or frame[12:14] != b"\x08\x00":
                continue
            l4 = 14 + (frame[14] & 15) * 4
            dport = int.from_bytes(frame[l4 + 2 : l4 + 4], "big")
            if self.discover is None and frame[23] == 17 and dport == 67 and b"\x35\x01\x01" in frame[l4 + 248 :]:
                self.discover = now
            elif self.script is None and frame[23] == 6 and b"GET /boot.ipxe" in frame[l4 + 20 :]:
                self.script = now

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def boot(vm: VirtualMachine, lab: VirtualLab, timeout: float = 180.0) -> tuple[float, float]:
    """(QEMU start → script fetched, first DHCPDISCOVER → GET /boot.ipxe), seconds, from factory state."""
    marker = f"homelab: installing {vm.spec.name}"
    vm.reset()
    lab.arm(vm.spec.name)  # as `task up` does before waking it: otherwise the machine is told to wait
    watch = TapWatch(lab.network.lan_ns, vm.tap)
    vm.start()
    try:
        while marker not in vm.serial():
            if time.monotonic() - vm.started_at > timeout:
                raise SystemExit(
                    f"{vm.spec.name}: no boot script within {timeout:.0f}s; serial:\n{vm.serial()[-2000:]}"
                )
            time.sleep(0.02)
        total = time.monotonic() - vm.started_at
    finally:
        vm.stop()
        watch.close()
    if watch.discover is None or watch.script is None:
        raise SystemExit(f"{vm.spec.name}: the packet socket missed the DISCOVER or the script request")
    return total, watch.script - watch.discover


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="boots per stack and firmware (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("pxe_boot benchmark: needs root (network namespaces, tap devices, ports 67/69)", file=sys.stderr)
        return 2
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pxe-bench-") as tmp:
        workdir = Path(tmp)
        site_file = workdir / "site.yaml"
        site_file.write_text(SITE)
        cache = REPO / ".cache" / "lab"
        with VirtualLab(load_site(site_file), site_file, workdir, cache, FIRMWARE, memory_mb=256) as lab:
            vms = [lab.machine(name) for name in FIRMWARE]
            lab.start_homelab()
            for vm in vms:
                boot(vm, lab)  # warm-up: the router learns the MAC
            lab.stop_boot_servers()
            for round_no in range(args.runs):
                for stack in ("ours", "dnsmasq"):
                    if stack == "ours":
                        lab.start_homelab()
                    else:
                        lab.start_homelab(dhcp=False, tftp=False)
                        lab.start_dnsmasq_proxy()
                    for vm in vms:
                        total, network = boot(vm, lab)
                        results.setdefault((vm.spec.firmware.value, stack), []).append((total, network))
                        print(f"round {round_no + 1} {stack:8} {vm.spec.firmware.value:10} {total:6.2f} s "
                              f"(DISCOVER to script {network:5.2f} s)", flush=True)  # fmt: skip
                    lab.stop_boot_servers()
    print(
        f"\nPXE boot, seconds, medians of {args.runs} runs each (accelerator {accelerator()}); "
        "ours = pxe proxyDHCP + TFTP + HTTP, baseline = dnsmasq proxyDHCP + TFTP (+ the same pxe HTTP script)"
    )
    print(f"{'measure':34} {'firmware':10} {'ours':>7} {'dnsmasq':>8} {'ratio':>6}   runs: ours | dnsmasq")
    for index, measure in enumerate(("QEMU start -> boot script fetched", "first DISCOVER -> GET /boot.ipxe")):
        for firmware in FIRMWARE.values():
            ours = [run[index] for run in results[(firmware.value, "ours")]]
            base = [run[index] for run in results[(firmware.value, "dnsmasq")]]
            ratio = statistics.median(ours) / statistics.median(base)
            runs = f"{' '.join(f'{x:.2f}' for x in ours)} | {' '.join(f'{x:.2f}' for x in base)}"
            print(f"{measure:34} {firmware.value:10} {statistics.median(ours):7.2f} {statistics.median(base):8.2f} "
                  f"{ratio:6.3f}   {runs}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
