"""The alert rules as deployed (rendered by helm): promtool accepts them, every alert fires and stays quiet in
promtool unit tests, links an existing runbook page, and every expression parses with promql-parser."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from promtool_cases import CASES, Case
from rulefiles import RUNBOOKS, alerts, rules

from chart_harness import REPO

SECTIONS = ("## What it means", "## How to check", "## How to fix")


def test_promtool_accepts_every_rule_file(rule_files: dict[str, Path]) -> None:
    proc = subprocess.run(
        ["promtool", "check", "rules", *map(str, rule_files.values())], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_links_a_runbook_page_with_the_three_sections(rule_files: dict[str, Path]) -> None:
    for name, variants in alerts(rule_files).items():
        for rule in variants:
            url = rule.get("annotations", {}).get("runbook_url", "")
            assert url.startswith(RUNBOOKS + "/"), f"{name}: runbook_url {url!r} is not under {RUNBOOKS}"
            page = REPO / "docs" / "runbooks" / url.removeprefix(RUNBOOKS + "/")
            assert page.is_file(), f"{name}: no runbook page {page.relative_to(REPO)}"
            text = page.read_text()
            assert all(s in text for s in SECTIONS), f"{page.name} lacks one of {SECTIONS}"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case(rule_files: dict[str, Path]) -> None:
    names = set(alerts(rule_files))
    fires = {c.alert for c in CASES if c.fires}
    quiet = {c.alert for c in CASES if not c.fires}
    assert names - fires == set(), "alerts without a case that makes them fire"
    assert names - quiet == set(), "alerts without a case that keeps them quiet"
    assert {c.alert for c in CASES} - names == set(), "cases for alerts that do not exist"


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _expected(case: Case, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for labels in case.fires:
        (rule,) = [r for r in variants if r["labels"]["severity"] == labels["severity"]]
        annotations = {k: _render(v, labels) for k, v in rule.get("annotations", {}).items()}
        out.append({"exp_labels": labels, "exp_annotations": annotations})
    return out


def test_promtool_unit_tests_fire_and_stay_quiet(rule_files: dict[str, Path], tmp_path: Path) -> None:
    """One promtool run per rule file, holding the cases of its alerts (fewer rules to evaluate per minute)."""
    by_name = alerts(rule_files)
    home = {rule["alert"]: path for path in rule_files.values() for rule in rules({"f": path}) if "alert" in rule}
    failures = []
    for path in rule_files.values():
        tests = [
            {
                "name": f"{c.alert} {'fires' if c.fires else 'stays quiet'} ({index})",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in c.series.items()],
                "alert_rule_test": [
                    {"eval_time": c.eval_time, "alertname": c.alert, "exp_alerts": _expected(c, by_name[c.alert])}
                ],
            }
            for index, c in enumerate(CASES)
            if home[c.alert] == path
        ]
        spec = {"rule_files": [str(path)], "evaluation_interval": "1m", "tests": tests}
        test_file = tmp_path / f"{path.stem}_test.yaml"
        test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        proc = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"{test_file.name}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    assert not failures, "\n".join(failures)


def test_every_expression_parses_with_promql_parser(rule_files: dict[str, Path]) -> None:
    for rule in rules(rule_files):
        promql_parser.parse(rule["expr"])


@pytest.mark.parametrize("availability", [70.0, 99.9])
def test_the_site_objective_sets_the_thresholds(tmp_path: Path, availability: float) -> None:
    from rulefiles import render_rule_files

    files = render_rule_files(tmp_path, availability=availability)
    text = files["monitoring-slos"].read_text()
    assert f"(14.4 * (1 - {availability:g} / 100))" in text
    assert f"vector({availability:g} / 100)" in text
