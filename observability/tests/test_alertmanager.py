"""A real Alertmanager (Debian's) with the monitoring app's routing: a page that really fires in the test Prometheus
reaches ntfy through the homepage's route, tickets and pages go to their receivers, and inhibition holds."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rulefiles import alerts
from stack import NODE, Stack, get_json, http_status, wait_until

from homelab_homepage.ntfy import NtfyMessage


def _alerts(stack: Stack) -> list[dict[str, Any]]:
    return list(get_json(f"{stack.alertmanager}/api/v2/alerts"))


def _post(stack: Stack, *alerts: dict[str, str]) -> None:
    ends = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    body = [{"labels": labels, "annotations": {"summary": labels["alertname"]}, "endsAt": ends} for labels in alerts]
    request = urllib.request.Request(
        f"{stack.alertmanager}/api/v2/alerts", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _messages(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [m for m in stack.ntfy.bodies if f"] {name} (" in m["title"]]


def test_the_dns_page_reaches_ntfy_and_silences_its_ticket(stack: Stack) -> None:
    (page,) = wait_until("the dns page in ntfy", lambda: _messages(stack, "DnsAvailabilityBudgetBurn"), timeout=120)
    NtfyMessage.model_validate(page)  # ntfy's documented publish-as-JSON body
    assert (page["topic"], page["title"], page["priority"]) == (
        "homelab-test",
        "[FIRING:1] DnsAvailabilityBudgetBurn (critical)",
        5,
    )
    assert page["click"].endswith("/docs/runbooks/slo-dns-availability.md")
    dns = [a for a in _alerts(stack) if a["labels"]["alertname"] == "DnsAvailabilityBudgetBurn"]
    by_severity = {a["labels"]["severity"]: a for a in dns}
    assert [r["name"] for r in by_severity["critical"]["receivers"]] == ["page"]
    ticket = by_severity["warning"]
    assert ticket["status"]["state"] == "suppressed"
    assert ticket["status"]["inhibitedBy"] == [by_severity["critical"]["fingerprint"]]


def test_a_node_down_silences_the_alerts_about_that_node_only(stack: Stack) -> None:
    _post(
        stack,
        {"alertname": "NodeDown", "severity": "critical", "node": "node1"},
        {"alertname": "NodeDiskFillingUp", "severity": "warning", "node": "node1", "mountpoint": "/"},
        {"alertname": "NodeDiskFillingUp", "severity": "warning", "node": "node2", "mountpoint": "/"},
        {"alertname": "DnsInvalidEndpoints", "severity": "info", "namespace": "dns"},
    )
    (disk,) = wait_until("the disk ticket in ntfy", lambda: _messages(stack, "NodeDiskFillingUp"))
    NtfyMessage.model_validate(disk)
    assert disk["priority"] == 3
    assert "node=node2" in disk["message"]
    assert "node=node1" not in disk["message"]
    wait_until("the node page in ntfy", lambda: _messages(stack, "NodeDown"))
    state = {(a["labels"]["alertname"], a["labels"].get("node")): a for a in _alerts(stack)}
    assert state["NodeDiskFillingUp", "node1"]["status"]["state"] == "suppressed"
    assert state["NodeDiskFillingUp", "node2"]["status"]["state"] == "active"
    assert [r["name"] for r in state["NodeDiskFillingUp", "node2"]["receivers"]] == ["ticket"]
    assert [r["name"] for r in state["DnsInvalidEndpoints", None]["receivers"]] == ["null"]
    time.sleep(3)  # three group intervals: an info alert never reaches a phone
    assert _messages(stack, "DnsInvalidEndpoints") == []


def test_a_node_down_inhibits_what_our_services_on_that_node_alert(stack: Stack, rule_files: dict[str, Path]) -> None:
    """The real thing end to end: a service's alert, as the real Prometheus evaluates it on the scraped series,
    carries the node its pod runs on (the charts' ServiceMonitor relabeling) and NodeDown of that node mutes it."""
    (node_down,) = alerts(rule_files)["NodeDown"]
    # NodeDown as its rule makes it from node-exporter's `up` (relabeled with `node` in the monitoring values)
    _post(stack, {"alertname": "NodeDown", **node_down["labels"], "job": "node-exporter", "instance": "127.0.0.11:9100",
                  "node": NODE})  # fmt: skip
    for _ in range(10):  # requests for seed files that do not exist: refused (403), counted by reason
        assert http_status(f"{stack.url('autoinstall')}/seed/not-a-seed-path") == 403
    (refused,) = wait_until(
        "the refusals alert in Alertmanager",
        lambda: [a for a in _alerts(stack) if a["labels"]["alertname"] == "AutoinstallSeedRequestsRefused"],
        procs=stack.procs,
    )
    assert (refused["labels"]["node"], refused["labels"]["pod"]) == (NODE, "autoinstall-0")
    assert refused["labels"]["severity"] == "warning"  # a ticket, were the node up
    assert refused["status"]["state"] == "suppressed"
    inhibitors = {a["fingerprint"]: a["labels"] for a in _alerts(stack)}
    assert refused["status"]["inhibitedBy"]
    assert all(inhibitors[f]["alertname"] == "NodeDown" for f in refused["status"]["inhibitedBy"])
    assert all(inhibitors[f]["node"] == NODE for f in refused["status"]["inhibitedBy"])
    time.sleep(3)  # three group intervals: a muted alert never reaches a phone
    assert _messages(stack, "AutoinstallSeedRequestsRefused") == []
