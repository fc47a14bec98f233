"""Rules and dashboards against a real Prometheus (Debian's) scraping our real services: nothing refers to a metric
that does not exist (a renamed metric fails here), every rule evaluates, every panel query returns a series."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from rulefiles import rules, services
from stack import SERVICES, Stack, get_json, wait_until

from chart_harness import REPO
from homelab_observability.dashboards import panel_queries

EXTERNAL = yaml.safe_load((REPO / "observability" / "external-metrics.yaml").read_text())


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _recorded(rule_files: dict[str, Path]) -> set[str]:
    return {r["record"] for r in rules(rule_files) if "record" in r}


def _groups(stack: Stack) -> list[dict[str, Any]]:
    return list(get_json(f"{stack.prometheus}/api/v1/rules")["data"]["groups"])


def test_the_stack_runs_every_service_chart() -> None:
    """A new charts/<service> must be started and scraped here too, or its metrics go unchecked."""
    assert sorted(SERVICES) == services()


def test_every_rule_evaluates_without_error(stack: Stack, rule_files: dict[str, Path]) -> None:
    loaded = [r for g in _groups(stack) for r in g["rules"]]
    assert len(loaded) == len(rules(rule_files))
    broken = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
    assert broken == {}


def test_every_metric_a_rule_or_panel_uses_is_scraped(stack: Stack, rule_files: dict[str, Path]) -> None:
    scraped = set(get_json(f"{stack.prometheus}/api/v1/label/__name__/values")["data"])
    used = {name for r in rules(rule_files) for name in metric_names(r["expr"])}
    used |= {name for queries in panel_queries().values() for q in queries for name in metric_names(q)}
    used -= _recorded(rule_files)
    missing = used - scraped - set(EXTERNAL)
    assert missing == set(), "used by a rule or panel, exported by none of our services (renamed?)"
    assert set(EXTERNAL) - used == set(), "external-metrics.yaml lists names nothing uses"
    assert set(EXTERNAL) & scraped == set(), "external-metrics.yaml lists names our services export"


def test_every_dashboard_panel_query_returns_a_series(stack: Stack) -> None:
    empty = [f"{board}: {q}" for board, queries in panel_queries().items() for q in queries if not stack.query(q)]
    assert empty == []


def test_the_dns_slo_burns_and_its_page_alert_fires(stack: Stack, tmp_path: Path) -> None:
    """Every sync fails (the RFC 2136 server never answers): the burn rate is 1 / budget = 1000x, so the page fires.

    The burn rate over the run is plotted (PNG) from the test Prometheus' data; set HOMELAB_PLOT_DIR to keep it.
    """
    burn = 'slo:sli_error:ratio_rate5m{slo="dns-availability"} / on (slo, service) (1 - slo:objective:ratio)'
    wait_until("dns burn rate", lambda: stack.query(f"{burn} > 14.4"), procs=stack.procs)
    alerts = wait_until(
        "the dns page",
        lambda: [
            a
            for a in get_json(f"{stack.prometheus}/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == "DnsAvailabilityBudgetBurn" and a["state"] == "firing"
        ],
    )
    assert {a["labels"]["severity"] for a in alerts} == {"critical", "warning"}
    from plot import plot_burn_rate

    out = Path(os.environ.get("HOMELAB_PLOT_DIR", tmp_path)) / "slo-burn-rate-dns.png"
    plot_burn_rate(stack, "dns-availability", stack.started, time.time(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
