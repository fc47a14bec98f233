"""The PXE boot sequence, as code: `python diagrams/pxe_boot.py [OUT_DIR]` writes pxe_boot.png.

One machine from power-on to "installed", numbered in the order things happen (services/pxe/README.md,
services/autoinstall/README.md). The book's build renders it (scripts/docs/hooks.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.generic.network import Router
from diagrams.onprem.client import User
from diagrams.onprem.compute import Server
from diagrams.programming.language import Python

GRAPH = {"pad": "0.4", "nodesep": "0.6", "ranksep": "1.6", "fontsize": "20", "splines": "spline"}
EDGE = {"fontsize": "13"}


def step(label: str, **attrs: str) -> Edge:
    return Edge(label=label, **EDGE, **attrs)


def render(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "pxe_boot"
    with Diagram(
        "PXE boot: from power-on to an installed machine",
        filename=str(target),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
    ):
        up = User("task up")
        router = Router("home router\nDHCP: the address")
        machine = Server("machine\nfirmware -> iPXE ->\nUbuntu installer (RAM)")
        with Cluster("controller (or in-cluster pxe + autoinstall)"):
            pxe = Python("pxe\nproxyDHCP 67/4011, TFTP 69,\nHTTP 8080")
            autoinstall = Python("autoinstall\nHTTP 8081\ninstall state")

        up >> step("1 arm the install window\n(one-shot, short-lived)") >> autoinstall
        up >> step("2 wake (Wake-on-LAN)") >> pxe
        pxe >> step("3 magic packet", style="dashed") >> machine
        machine >> step("4 DHCPDISCOVER (broadcast)") >> router
        router >> step("5 offer: IP, gateway, DNS") >> machine
        pxe >> step("6 proxyDHCP offer: boot file\nby firmware (BIOS / UEFI)") >> machine
        machine >> step("7 TFTP: iPXE binary\n8 iPXE asks again -> script URL\n9 GET /boot.ipxe?mac=..") >> pxe
        pxe >> step("10 GET /api/v1/boot/{mac}\n-> install + seed URL") >> autoinstall
        machine >> step("11 kernel, initrd, then the ISO\n(url=, held in RAM)") >> pxe
        machine >> step("12 user-data (one fetch),\nimages; 13 'installed'") >> autoinstall
        machine >> step("14 reboot: boot.ipxe says\n'local' -> boots its disk", style="dotted") >> pxe
    return target.with_suffix(".png")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print(render(out))
