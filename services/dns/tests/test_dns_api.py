"""The HTTP API (desired vs actual, status, force a sync), metrics and settings; fuzzed against its OpenAPI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import schemathesis
from dns_helpers import ZONE, free_port
from flask import Flask
from hypothesis import HealthCheck, settings

from homelab_common.k8s.testing import wait_for
from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import api_schema
from homelab_dns.app import Runtime, create_app
from homelab_dns.settings import Settings

STATIC = [
    {"name": f"router.{ZONE}", "targets": ["192.168.1.1"]},
    {"name": f"nas.{ZONE}", "targets": ["192.168.1.5", "fd00::5"], "ttl": 60},
    {"name": "bad..name", "targets": ["192.168.1.6"]},
]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "owner_id": "homelab",
        "policy": "sync",
        "domain_filter": [ZONE],
        "kubernetes": False,
        "dns_host": "127.0.0.1",
        "dns_port": free_port(),
        "static_records": STATIC,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(make_settings())
    yield app
    app.extensions["homelab_dns"].stop()


def runtime(app: Flask) -> Runtime:
    result: Runtime = app.extensions["homelab_dns"]
    return result


def test_records_show_desired_actual_owner_and_source(app: Flask) -> None:
    client = app.test_client()
    wait_for(lambda: runtime(app).controller.ready() is None)  # the loop's first sync wrote everything
    assert client.post("/sync").get_json() == {"applied": False, "created": 0, "updated": 0, "deleted": 0}
    records = {(r["name"], r["type"]): r for r in client.get("/records").get_json()}
    router = records[(f"router.{ZONE}", "A")]
    assert router["state"] == "synced"
    assert router["owner"] == "homelab"
    assert router["source"] == f"static/router.{ZONE}"
    assert router["desired"] == router["actual"] == {"targets": ["192.168.1.1"], "ttl": 300, "proxied": None}
    assert records[(f"nas.{ZONE}", "AAAA")]["desired"] == {"targets": ["fd00::5"], "ttl": 60, "proxied": None}
    only = client.get("/records", query_string={"state": "synced", "name": f"NAS.{ZONE}."}).get_json()
    assert {r["type"] for r in only} == {"A", "AAAA"}


def test_status_reports_invalid_endpoints_and_sync_health(app: Flask) -> None:
    client = app.test_client()
    client.post("/sync")
    status = client.get("/status").get_json()
    assert status["provider"] == "embedded"
    assert status["writes"] is True
    assert status["consecutive_errors"] == 0
    assert status["last_success"] > 0
    assert status["records"]["synced"] == 3
    assert [p["source"] for p in status["invalid"]] == ["static/bad..name"]
    assert "invalid label" in status["invalid"][0]["reason"]
    assert client.get("/readyz").status_code == 200


def test_metrics_for_alerting(app: Flask) -> None:
    client = app.test_client()
    client.post("/sync")
    text = client.get("/metrics").get_data(as_text=True)
    assert "homelab_dns_last_successful_sync_timestamp_seconds " in text
    assert "homelab_dns_consecutive_sync_errors 0.0" in text
    assert 'homelab_dns_records{state="synced"} 3.0' in text
    assert "homelab_dns_invalid_endpoints 1.0" in text
    assert "homelab_dns_owner_mismatches 0.0" in text
    assert 'homelab_dns_queries_total{result="malformed"}' in text


def test_failed_sync_is_a_503_naming_the_server() -> None:
    port = free_port()
    s = make_settings(
        provider="rfc2136",
        rfc2136_server="127.0.0.1",
        rfc2136_port=port,
        rfc2136_zone=ZONE,
        tsig_key_name="k",
        tsig_secret="c2VjcmV0",
        rfc2136_timeout=1,
    )
    app = create_app(s)
    try:
        response = app.test_client().post("/sync")
        assert response.status_code == 503
        assert f"127.0.0.1:{port}" in response.get_json()["message"]
        assert "c2VjcmV0" not in response.get_data(as_text=True)
        status = app.test_client().get("/status").get_json()
        assert status["consecutive_errors"] >= 1
        assert "connection refused" in status["last_error"]
    finally:
        runtime(app).stop()


def test_policy_and_owner_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_DNS_DOMAIN_FILTER", f'["{ZONE}"]')
    with pytest.raises(SettingsError) as error:
        load_settings(Settings)
    assert "HOMELAB_DNS_OWNER_ID" in str(error.value)
    assert "HOMELAB_DNS_POLICY" in str(error.value)
    monkeypatch.setenv("HOMELAB_DNS_OWNER_ID", "homelab")
    monkeypatch.setenv("HOMELAB_DNS_POLICY", "upsert-only")
    monkeypatch.setenv("HOMELAB_DNS_PROVIDER", "rfc2136")
    with pytest.raises(SettingsError, match=r"HOMELAB_DNS_RFC2136_SERVER.*HOMELAB_DNS_TSIG_SECRET"):
        load_settings(Settings)
    monkeypatch.setenv("HOMELAB_DNS_PROVIDER", "embedded")
    monkeypatch.setenv("HOMELAB_DNS_POLICY", "delete-everything")
    with pytest.raises(SettingsError, match="HOMELAB_DNS_POLICY"):
        load_settings(Settings)


@pytest.fixture
def dns_api(app: Flask) -> object:
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("dns_api")


@schema.parametrize()
@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
def test_dns_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB_")}
    env.update(
        HOMELAB_SECRETS_DIR=str(tmp_path / "no-secrets"),
        HOMELAB_DNS_OWNER_ID="homelab",
        HOMELAB_DNS_POLICY="sync",
        HOMELAB_DNS_DOMAIN_FILTER=f'["{ZONE}"]',
        HOMELAB_DNS_KUBERNETES="false",
        HOMELAB_DNS_DNS_HOST="127.0.0.1",
        HOMELAB_DNS_STATIC_RECORDS=json.dumps(STATIC[:1]),
    )
    env.update(extra)
    return env


def test_console_script_serves_the_api_and_dns(tmp_path: Path) -> None:
    http, dns_port = free_port(), free_port()
    env = service_env(tmp_path, HOMELAB_HTTP_BIND=f"127.0.0.1:{http}", HOMELAB_DNS_DNS_PORT=str(dns_port))
    process = subprocess.Popen([sys.executable, "-m", "homelab_dns"], env=env, stderr=subprocess.PIPE, text=True)
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(ready)
        query = dns.message.make_query(f"router.{ZONE}", "A")
        response = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
        assert [rr.to_text() for rrset in response.answer for rr in rrset] == ["192.168.1.1"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert '"msg": "dns server listening"' in stderr


def test_bad_setting_stops_the_service_naming_the_variable(tmp_path: Path) -> None:
    env = service_env(tmp_path, HOMELAB_DNS_POLICY="delete-everything")
    result = subprocess.run(
        [sys.executable, "-m", "homelab_dns"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "dns: invalid settings: HOMELAB_DNS_POLICY" in result.stderr
