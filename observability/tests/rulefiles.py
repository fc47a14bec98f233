"""The rule files Prometheus gets in the cluster, rendered the way Argo CD renders them (helm), for the tests.

Service alerts come from each service chart's PrometheusRule (charts/<service>, through the library chart); SLO
and platform alerts from the monitoring app's templates (gitops/platform/monitoring, its upstream dependency
stripped: it cannot be downloaded here and renders nothing we test).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from chart_harness import REPO, render_chart

#: not services: the library chart renders nothing alone, the bootstrap chart ships no PrometheusRule
NOT_SERVICES = {"library", "bootstrap"}
DOMAIN = "lab.example.com"
RUNBOOKS = f"https://git.{DOMAIN}/homelab/gitops/src/branch/main/docs/runbooks"


def services() -> list[str]:
    """Every service chart (charts/<name> but library and bootstrap); render_rule_files keeps those whose
    rendering holds a PrometheusRule, so a new service's alerts are tested without editing this file."""
    charts = REPO / "charts"
    return sorted(p.parent.name for p in charts.glob("*/Chart.yaml") if p.parent.name not in NOT_SERVICES)


def _values(tmp: Path, name: str, values: dict[str, Any]) -> Path:
    path = tmp / f"values-{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render_rule_files(out: Path, availability: float = 99.9) -> dict[str, Path]:
    """Write every PrometheusRule's spec as a plain rule file under ``out``; returns {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    monitoring = out / "monitoring"
    shutil.copytree(REPO / "gitops" / "platform" / "monitoring", monitoring)
    meta = yaml.safe_load((monitoring / "Chart.yaml").read_text())
    meta.pop("dependencies", None)
    (monitoring / "Chart.yaml").write_text(yaml.safe_dump(meta))
    # what homelab_bootstrap.gitops generates: global.runbooks for our charts, the site block for the wrappers
    ours = _values(out, "services", {"global": {"runbooks": RUNBOOKS}})
    site = {"domain": DOMAIN, "slo": {"availability": availability, "durability": 99.99}}
    wrapper = _values(out, "monitoring", {"site": site})
    docs = [d for s in services() for d in render_chart(REPO / "charts" / s, [ours], namespace=s)]
    docs += render_chart(monitoring, [wrapper], namespace="monitoring")
    files = {}
    for doc in docs:
        if doc.kind == "PrometheusRule":
            path = out / f"{doc.chart}-{doc.name}.yaml"
            path.write_text(yaml.safe_dump(doc.body["spec"], sort_keys=False))
            files[path.stem] = path
    return files


def rules(files: dict[str, Path]) -> list[dict[str, Any]]:
    """Every rule of every file (alerting and recording)."""
    return [r for p in files.values() for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]]


def alerts(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Alerting rules by alert name (an SLO's alert has two rules: page and ticket)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in rules(files):
        if "alert" in rule:
            found.setdefault(rule["alert"], []).append(rule)
    return found
