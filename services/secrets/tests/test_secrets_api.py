"""The HTTP API: managed Secrets (never values), a rotation on request, status; fuzzed against its OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from secrets_helpers import FAST, MITTWALD, OURS, create_secret, values
from secrets_helpers import settings as make_settings

from homelab_common.k8s.testing import KubeEmulator, kube, wait_for
from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import api_schema
from homelab_secrets.app import create_app
from homelab_secrets.controller import Controller
from homelab_secrets.settings import Settings

__all__ = ["kube"]


@pytest.fixture
def app(kube: KubeEmulator) -> Iterator[Flask]:
    create_secret(kube, "db", {OURS + "generate": "password", OURS + "rotate-every": "720h"})
    create_secret(kube, "bad", {MITTWALD + "autogenerate": "password", MITTWALD + "type": "uuid"})
    create_secret(kube, "theirs", {MITTWALD + "autogenerate": "password"}, data={"password": b"hunter2"})
    create_secret(kube, "a-copy", {OURS + "copy-of": "apps/db"}, data={"password": b"copied"})
    app = create_app(make_settings(), api_client=kube.api_client(), backoff=FAST)
    controller: Controller = app.extensions["homelab_secrets"]
    wait_for(lambda: "password" in values(kube, "db"))
    wait_for(lambda: controller.passes > 0)
    yield app
    controller.stop()


def test_managed_secrets_are_listed_with_state_and_never_values(app: Flask, kube: KubeEmulator) -> None:
    client = app.test_client()
    wait_for(lambda: {s["name"]: s["state"] for s in client.get("/secrets").get_json()}.get("db") == "ok")
    listed = {s["name"]: s for s in client.get("/secrets").get_json()}
    assert listed["db"]["keys"] == ["password"]
    assert listed["db"]["next_rotation"] is not None
    assert listed["db"]["age_seconds"] is not None
    assert listed["bad"]["state"] == "error"
    assert "unknown type 'uuid'" in listed["bad"]["last_error"]
    assert listed["theirs"]["state"] == "refused"
    body = client.get("/secrets").get_data(as_text=True)
    assert values(kube, "db")["password"].decode() not in body
    assert "hunter2" not in body
    assert client.get("/secrets", query_string={"state": "refused"}).get_json()[0]["name"] == "theirs"
    assert client.get("/secrets/apps/nope").status_code == 404
    assert "a-copy" not in listed  # a copy (copy-of) is written into, not managed
    assert client.post("/secrets/apps/a-copy/rotate").status_code == 404


def test_a_rotation_can_be_asked_for(app: Flask, kube: KubeEmulator) -> None:
    client = app.test_client()
    first = values(kube, "db")["password"]
    reply = client.post("/secrets/apps/db/rotate")
    assert reply.status_code == 202
    wait_for(lambda: values(kube, "db").get("password.previous") == first)
    assert values(kube, "db")["password"] != first
    assert client.get("/secrets/apps/db").get_json()["rotated_at"] is not None
    assert client.post("/secrets/apps/theirs/rotate").status_code == 409
    assert client.post("/secrets/apps/missing/rotate").status_code == 404


def test_status_counts_and_leadership(app: Flask) -> None:
    status = app.test_client().get("/status").get_json()
    assert status["leader"] is True
    assert (status["managed"], status["refused"], status["errors"]) == (1, 1, 1)
    assert status["passes"] >= 1


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_SECRETS_HOOK_RETRY_SECONDS", "0")
    with pytest.raises(SettingsError, match="HOMELAB_SECRETS_HOOK_RETRY_SECONDS"):
        load_settings(Settings)


def test_metrics_are_exposed(app: Flask) -> None:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for name in ("homelab_secrets_managed", "homelab_secrets_is_leader", "homelab_secrets_hook_failures_total"):
        assert name in text
    assert json.loads(app.test_client().get("/readyz").get_data())["status"] == "ready"


@pytest.fixture
def api(app: Flask) -> object:
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()
