"""Backup and the restore drill, as code: `python diagrams/backup_restore.py [OUT_DIR]`.

A volume's way into two restic repositories (one offsite: 3-2-1) and the drill that proves it comes back
byte for byte (services/backup/README.md). The book's build renders it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.generic.storage import Storage
from diagrams.k8s.compute import Job
from diagrams.k8s.storage import PVC
from diagrams.onprem.monitoring import Prometheus
from diagrams.programming.language import Python

GRAPH = {"pad": "0.4", "nodesep": "0.7", "ranksep": "1.5", "fontsize": "20", "splines": "spline"}
EDGE = {"fontsize": "13"}


def step(label: str, **attrs: str) -> Edge:
    return Edge(label=label, **EDGE, **attrs)


def render(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "backup_restore"
    with Diagram(
        "backup and the restore drill (3-2-1)",
        filename=str(target),
        outformat="png",
        show=False,
        direction="LR",
        graph_attr=GRAPH,
    ):
        with Cluster("cluster"):
            controller = Python("backup controller\n(leader; schedules,\nreads Job reports)")
            pvc = PVC("every PVC\n(unless opted out)")
            backup = Job("backup Job\non the volume's node\n(read-only mount)")
            drill = Job("drill Job\n(scratch space)")
            prom = Prometheus("metrics, Events,\nalerts + runbooks")
        with Cluster("repositories (restic, encrypted)"):
            nas = Storage("NAS\n(sftp, rest, local)")
            offsite = Storage("offsite\n(s3, b2, rest)")

        controller >> step("1 schedule + jitter:\none Job per PVC\nper repository") >> backup
        pvc >> step("2 files (or a dump\nfrom backupcommand)") >> backup
        backup >> step("3 snapshot +\nchecksum manifest") >> nas
        backup >> step("3 snapshot +\nchecksum manifest") >> offsite
        controller >> step("4 drill schedule") >> drill
        nas >> step("5 restore latest", style="dashed") >> drill
        drill >> step("6 compare sha256\nwith the manifest", style="dotted") >> drill
        drill >> step("7 report: ok / corrupted") >> controller
        controller >> step("8 last success,\ndrill_ok, 3-2-1") >> prom
    return target.with_suffix(".png")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print(render(out))
