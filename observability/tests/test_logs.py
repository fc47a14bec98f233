"""Logs: what Alloy's pipeline parses and what Loki's rule selects match what our real services write.

Neither Alloy nor Grafana Loki can be installed here (no Debian, PyPI or npm package ships them; Debian's "loki" is
an unrelated genetics program), so the LogQL rule is not evaluated by a real Loki ruler: these tests check the
contract on both sides of it instead, with the log lines the services of the test stack really wrote.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from rulefiles import DOMAIN, RUNBOOKS
from stack import SERVICES, Stack

from chart_harness import REPO, render_chart

ALLOY = yaml.safe_load((REPO / "gitops" / "platform" / "alloy" / "values.yaml").read_text())["alloy"]["alloy"]
PIPELINE = ALLOY["configMap"]["content"]


def _block(stage: str) -> str:
    match = re.search(stage + r" \{\s*(.*?)\n\s*\}", PIPELINE, re.S)
    assert match, f"no {stage} in the Alloy pipeline"
    return match.group(1)


def _keys(stage: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+) = "(\w*)"', _block(stage)))


def _log_rules(tmp: Path) -> dict[str, Any]:
    chart = tmp / "loki"
    shutil.copytree(REPO / "gitops" / "platform" / "loki", chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta.pop("dependencies", None)
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    values = tmp / "site.yaml"
    values.write_text(yaml.safe_dump({"site": {"domain": DOMAIN}}))
    (config,) = [d for d in render_chart(chart, [values], namespace="loki") if d.name == "log-rules"]
    assert config.body["metadata"]["labels"]["loki_rule"] == "1"
    return dict(yaml.safe_load(config.body["data"]["log-alerts.yaml"]))


def test_every_line_our_services_write_has_the_fields_alloy_parses(stack: Stack) -> None:
    wanted = set(_keys("stage.json").values())
    assert wanted == {"level", "service", "logger"}
    for name in SERVICES:
        lines = [json.loads(line) for line in (stack.tmp / f"{name}.log").read_text().splitlines() if line.strip()]
        assert lines, f"{name} wrote no log line"
        assert [line for line in lines if not wanted <= set(line)] == []
        assert {line["level"] for line in lines} <= {"debug", "info", "warning", "error", "critical"}


def test_the_loki_rule_selects_labels_the_pipeline_sets_and_links_its_runbook(tmp_path: Path) -> None:
    (group,) = _log_rules(tmp_path)["groups"]
    (rule,) = group["rules"]
    labels = set(_keys("stage.labels")) | {"namespace", "pod", "container"}
    selector = re.search(r"\{(.*?)\}", rule["expr"])
    assert selector
    used = set(re.findall(r"(\w+)\s*=~?", selector.group(1))) | set(
        re.findall(r"by \((.*?)\)", rule["expr"])[0].split(", ")
    )
    assert used <= labels
    assert 'level="error"' in rule["expr"]  # the value homelab_common.logs writes for logging.ERROR
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOKS + "/")
    assert (REPO / "docs" / "runbooks" / url.removeprefix(RUNBOOKS + "/")).is_file()
