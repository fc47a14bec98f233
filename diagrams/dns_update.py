"""The DNS update flow, as code: `python diagrams/dns_update.py [OUT_DIR]` writes dns_update.png.

From an Ingress appearing to a laptop on the LAN resolving its name (services/dns/README.md). The book's build
renders it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.generic.network import Router
from diagrams.k8s.network import Ingress
from diagrams.onprem.client import Client
from diagrams.onprem.dns import Powerdns
from diagrams.onprem.network import Traefik
from diagrams.programming.language import Python

GRAPH = {"pad": "0.4", "nodesep": "0.7", "ranksep": "1.4", "fontsize": "20", "splines": "spline"}
EDGE = {"fontsize": "13"}


def step(label: str, **attrs: str) -> Edge:
    return Edge(label=label, **EDGE, **attrs)


def render(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "dns_update"
    with Diagram(
        "DNS update: an Ingress becomes a name on the LAN",
        filename=str(target),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
    ):
        with Cluster("cluster"):
            ingress = Ingress("Ingress\ngit.home.example.com")
            traefik = Traefik("Traefik\n(LoadBalancer IP)")
            dns = Python("dns (leader writes)\nwatch -> plan ->\napply, ownership TXT")
            embedded = Python("embedded server\n(every replica,\nService port 53)")
        external = Powerdns("or: your DNS server\n(RFC 2136 + TSIG:\nBIND, Knot, PowerDNS)")
        router = Router("home router\nconditional forwarder\nfor the zone")
        laptop = Client("laptop")

        traefik >> step("1 status.loadBalancer.ip") >> ingress
        ingress >> step("2 watch event\n(within a second)") >> dns
        dns >> step("3a zone change\n(SOA serial + 1)") >> embedded
        dns >> step("3b update + AXFR", style="dashed") >> external
        laptop >> step("4 query") >> router
        router >> step("5 forward") >> embedded
        router >> step("5 forward", style="dashed") >> external
    return target.with_suffix(".png")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print(render(out))
