"""The architecture diagram, as code: `python diagrams/architecture.py [OUT_DIR]` writes architecture.png.

It shows the four stages of `task up` (metal, cluster, bootstrap, apps) and who talks to whom, the way
docs/ARCHITECTURE.md describes them. The test suite renders it, so a diagram that no longer builds fails CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.generic.network import Router
from diagrams.k8s.infra import Master, Node
from diagrams.onprem.ci import Droneci
from diagrams.onprem.client import User
from diagrams.onprem.compute import Server
from diagrams.onprem.gitops import Argocd
from diagrams.onprem.monitoring import Prometheus
from diagrams.onprem.network import Traefik
from diagrams.onprem.vcs import Gitea
from diagrams.programming.language import Python

GRAPH = {"pad": "0.4", "nodesep": "0.35", "ranksep": "1.1", "fontsize": "20", "splines": "spline"}


def render(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "architecture"
    with Diagram(
        "homelab: task up, from empty disks to a self-managing cluster",
        filename=str(target),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
    ):
        user = User("you: ./task up\n(site.yaml)")
        router = Router("home router\n(DHCP stays here)")

        with Cluster("1 metal: the controller (your laptop)"):
            pxe = Python("pxe\nproxyDHCP 67/4011\nTFTP 69, iPXE scripts, WoL")
            autoinstall = Python("autoinstall\nper-machine user-data\ninstall state (SQLite)")
            bootstrap = Python("bootstrap job\nnamespaces, ArgoCD,\nGitOps repo, root app")

        with Cluster("2 cluster: bare-metal machines (Ubuntu autoinstall, k3s)"):
            first = Master("first server\n--cluster-init")
            others = [Server("servers join"), Node("agents join")]

        with Cluster("3 bootstrap + 4 apps: in the cluster, synced by ArgoCD"):
            argocd = Argocd("ArgoCD\nApplicationSet\nover gitops/")
            gitea = Gitea("Gitea\n(the GitOps repo)")
            platform = [
                Traefik("Traefik ingress,\ncert-manager"),
                Prometheus("kube-prometheus-stack,\nLoki, alerts"),
            ]
            ours = [Python("dns, homepage,\npxe + autoinstall")]
            apps = [Droneci("Woodpecker CI,\nregistry")]

        user >> Edge(label="site.yaml") >> [pxe, autoinstall, bootstrap]
        router >> Edge(label="addresses", style="dashed") >> first
        pxe >> Edge(label="WoL, proxyDHCP,\nTFTP, iPXE script") >> first
        autoinstall >> Edge(label="user-data;\n'installed' back") >> first
        pxe >> Edge(label="boot decision", style="dotted") >> autoinstall
        first >> Edge(label="k3s token") >> others
        bootstrap >> Edge(label="kubeconfig") >> first
        first >> Edge(label="helm: ArgoCD;\nroot ApplicationSet") >> argocd
        argocd >> Edge(label="pull") >> gitea
        argocd >> platform
        argocd >> ours
        argocd >> apps
    return target.with_suffix(".png")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print(render(out))
