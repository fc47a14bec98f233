"""Bootstrap and the GitOps handover, as code: `python diagrams/bootstrap_gitops.py [OUT_DIR]`.

What `task up`'s bootstrap and apps stages do (bootstrap/README.md, "The bootstrap steps"): Argo CD first syncs
from the repository the controller serves, then the repository moves into the cluster's own Gitea and Argo CD is
switched over, after which the controller is no longer needed. The book's build renders it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.k8s.podconfig import Secret
from diagrams.onprem.client import User
from diagrams.onprem.gitops import Argocd
from diagrams.onprem.vcs import Git, Gitea
from diagrams.programming.language import Python

GRAPH = {"pad": "0.4", "nodesep": "0.7", "ranksep": "1.5", "fontsize": "20", "splines": "spline"}
EDGE = {"fontsize": "13"}


def step(label: str, **attrs: str) -> Edge:
    return Edge(label=label, **EDGE, **attrs)


def render(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "bootstrap_gitops"
    with Diagram(
        "bootstrap and the GitOps handover",
        filename=str(target),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
    ):
        with Cluster("controller: task up"):
            up = User("task up\n(site.yaml)")
            seed = Git("seed repository\ngitops/ + charts/ +\nvalues-site.yaml\n(git smart HTTP :8418)")
            bootstrap = Python("bootstrap stage\n(read, then write)")
        with Cluster("cluster"):
            secrets = Secret("namespaces,\nCloudflare tokens;\nsecrets service fills\nadmin credentials")
            argocd = Argocd("Argo CD\n(helm, then it\nmanages itself)")
            apps = Python("ApplicationSets:\nsystem, platform, apps")
            gitea = Gitea("Gitea\nhomelab/gitops")

        up >> step("1 render values\nfrom the site") >> seed
        up >> bootstrap
        bootstrap >> step("2 namespaces,\nsecrets") >> secrets
        bootstrap >> step("3 helm install Argo CD\n4 root ApplicationSets") >> argocd
        argocd >> step("5 clone (until step 8)", style="dashed") >> seed
        argocd >> step("6 sync in waves") >> apps
        bootstrap >> step("7 apps stage: org, repo,\nOAuth app; push") >> gitea
        bootstrap >> step("8 switch the root\nto Gitea's URL", style="bold") >> argocd
        argocd >> step("9 from now on: pull\n(changes are commits)", style="bold") >> gitea
    return target.with_suffix(".png")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print(render(out))
