"""Alertmanager webhook → ntfy: the message matches ntfy's documented publish-as-JSON API, and ntfy being down
is a 503 Alertmanager retries, never a crash. ntfy is an HTTP server on loopback that records what it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from homelab_homepage.ntfy import Notification, NtfyMessage, to_ntfy

MakeApp = Callable[..., Flask]


def assert_ntfy_message(body: dict[str, Any]) -> None:
    """What ntfy's documentation says a JSON publish may contain (NtfyMessage forbids any other field)."""
    NtfyMessage.model_validate(body)
    assert body["priority"] in {1, 2, 3, 4, 5}


def alert(name: str, severity: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} happened", "runbook_url": f"https://git.home.arpa/rb/{name}.md"},
        "generatorURL": "http://prometheus/graph",
    }


def payload(*alerts: dict[str, Any], receiver: str = "page", status: str = "firing") -> dict[str, Any]:
    common = alerts[0]["labels"] if len(alerts) == 1 else {}
    return {
        "version": "4",
        "receiver": receiver,
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring:9093",
        "groupKey": '{}:{alertname="x"}',
        "truncatedAlerts": 0,
    }


class FakeNtfy:
    """Records every request (method, path, headers, JSON body); answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id":"x","event":"message"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    server = FakeNtfy()
    yield server
    server.close()


def test_a_page_becomes_an_urgent_ntfy_message_with_the_runbook() -> None:
    body = to_ntfy(Notification.model_validate(payload(alert("DnsAvailabilityBudgetBurn", "critical"))), "alerts")
    assert_ntfy_message(body)
    assert body["title"] == "[FIRING:1] DnsAvailabilityBudgetBurn (critical)"
    assert body["priority"] == 5
    assert body["click"] == "https://git.home.arpa/rb/DnsAvailabilityBudgetBurn.md"
    assert body["actions"][-1] == {
        "action": "view",
        "label": "Alertmanager",
        "url": "http://alertmanager.monitoring:9093",
    }


def test_a_mixed_group_takes_the_most_urgent_severity_and_a_resolution_is_quiet() -> None:
    mixed = payload(alert("A", "warning", node="n1"), alert("A", "critical", node="n2"), receiver="ticket")
    body = to_ntfy(Notification.model_validate(mixed), "alerts")
    assert_ntfy_message(body)
    assert body["priority"] == 5
    assert "node=n1" in body["message"]
    resolved = to_ntfy(Notification.model_validate(payload(alert("A", "warning", "resolved"), status="resolved")), "t")
    assert_ntfy_message(resolved)
    assert (resolved["title"], resolved["priority"], resolved["tags"]) == ("[RESOLVED] A", 2, ["white_check_mark"])


def test_a_huge_group_stays_below_ntfys_message_limit() -> None:
    many = payload(*(alert("Disk", "warning", node=f"node{i}") for i in range(500)))
    body = to_ntfy(Notification.model_validate(many), "alerts")
    assert len(body["message"].encode()) <= 4000


def test_the_route_posts_json_to_ntfys_root_url_with_the_token(make_app: MakeApp, ntfy: FakeNtfy) -> None:
    app = make_app(ntfy_url=ntfy.url + "/", ntfy_topic="homelab-x1", ntfy_token="tk_secret")
    response = app.test_client().post("/api/v1/alerts/ntfy", json=payload(alert("NodeDown", "critical")))
    assert response.status_code == 200
    assert response.get_json() == {"topic": "homelab-x1", "title": "[FIRING:1] NodeDown (critical)", "priority": 5}
    (sent,) = ntfy.requests
    assert sent["path"] == "/"  # JSON goes to the root URL, never the topic URL
    assert sent["headers"]["Authorization"] == "Bearer tk_secret"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert_ntfy_message(sent["body"])
    assert sent["body"]["topic"] == "homelab-x1"


def test_ntfy_down_is_a_503_alertmanager_retries(make_app: MakeApp, closed_port_url: str) -> None:
    app = make_app(ntfy_url=closed_port_url)
    response = app.test_client().post("/api/v1/alerts/ntfy", json=payload(alert("NodeDown", "critical")))
    assert response.status_code == 503
    assert "Alertmanager will retry" in response.get_json()["message"]
    assert app.test_client().get("/healthz").status_code == 200


def test_a_payload_without_alerts_is_refused_naming_the_field(make_app: MakeApp, ntfy: FakeNtfy) -> None:
    app = make_app(ntfy_url=ntfy.url)
    response = app.test_client().post("/api/v1/alerts/ntfy", json={"status": "firing", "alerts": []})
    assert response.status_code == 400
    assert any(f["field"].endswith("alerts") for f in response.get_json()["fields"])
    assert ntfy.requests == []


def test_without_ntfy_settings_the_route_does_not_exist(make_app: MakeApp) -> None:
    assert make_app().test_client().post("/api/v1/alerts/ntfy", json={}).status_code == 404
