"""The shared HTTP skeleton: typed operations, OpenAPI, health/readiness/metrics, JSON errors."""

from __future__ import annotations

import json
import logging

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from pydantic import BaseModel, ConfigDict, Field

from homelab_common.openapi import Api, Text
from homelab_common.testing import api_schema
from homelab_common.web import Conflict, NotFound, health, install_observability, redact_paths


class Item(BaseModel):
    """A thing in the demo inventory."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    size: int = Field(ge=0, le=1000)


class ItemQuery(BaseModel):
    prefix: str = ""
    limit: int = Field(default=10, ge=1, le=100)


def make_app() -> Flask:
    app = Flask("demo")
    api = Api("demo", "1.0.0")
    items: dict[str, Item] = {}

    @api.get("/items", summary="List items", query=ItemQuery, responses={200: list[Item]})
    def list_items(query: ItemQuery) -> list[Item]:
        return [i for n, i in sorted(items.items()) if n.startswith(query.prefix)][: query.limit]

    @api.post("/items", summary="Add an item", body=Item, responses={201: Item, 409: Conflict})
    def add_item(body: Item) -> tuple[Item, int]:
        if body.name in items:
            raise Conflict(f"item {body.name} exists")
        items[body.name] = body
        return body, 201

    @api.get("/items/<name>", summary="One item", responses={200: Item})
    def get_item(name: str) -> Item:
        if name not in items:
            raise NotFound(f"no item named {name}")
        return items[name]

    @api.get("/items/<name>/label", summary="An item as text", responses={200: Text("text/plain")})
    def label(name: str) -> tuple[str, int]:
        if name not in items:
            raise NotFound(f"no item named {name}")
        return f"{name}: {items[name].size}\n", 200

    api.install(app)
    install_observability(app, "demo")
    return app


@pytest.fixture
def app() -> Flask:
    return make_app()


def test_openapi_document_describes_every_operation(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/items", "/items/{name}", "/items/{name}/label"}
    post = doc["paths"]["/items"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Item"}
    assert set(post["responses"]) == {"201", "400", "409"}
    params = {p["name"]: p for p in doc["paths"]["/items"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 100
    assert doc["paths"]["/items/{name}"]["get"]["parameters"][0]["in"] == "path"


def test_bad_body_gets_400_naming_the_field(app: Flask) -> None:
    response = app.test_client().post("/items", json={"name": "ok", "size": -1})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_input"
    assert [f["field"] for f in body["fields"]] == ["body.size"]


def test_non_json_body_gets_400(app: Flask) -> None:
    response = app.test_client().post("/items", data="not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["fields"] == [{"field": "body", "message": "not JSON"}]


def test_bad_query_gets_400_naming_the_parameter(app: Flask) -> None:
    response = app.test_client().get("/items?limit=abc")
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"] == "query.limit"


def test_named_errors_map_to_their_status(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/items/nope").status_code == 404
    assert client.post("/items", json={"name": "a", "size": 1}).status_code == 201
    assert client.post("/items", json={"name": "a", "size": 1}).status_code == 409
    assert client.get("/items/a/label").data == b"a: 1\n"


def test_unknown_route_and_method_are_json(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/nowhere").get_json()["error"] == "not_found"
    response = client.delete("/items")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_unhandled_error_is_a_logged_500_without_details(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.get_data(as_text=True)
    assert any(r.message == "unhandled error" for r in caplog.records)


def test_readiness_reports_failing_checks(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    health(app).add("cache", lambda: "initial list not done")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"cache": "initial list not done"}
    health(app).add("broken", lambda: 1 / 0)  # type: ignore[arg-type, func-returns-value]
    assert "broken" in client.get("/readyz").get_json()["checks"]


def test_metrics_count_requests_by_route(app: Flask) -> None:
    client = app.test_client()
    client.get("/items/x")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'homelab_http_requests_total{method="GET",route="/items/<name>",service="demo",status="404"}' in text
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_response_bodies_are_json_of_the_declared_type(app: Flask) -> None:
    client = app.test_client()
    client.post("/items", json={"name": "b", "size": 2})
    assert json.loads(client.get("/items?prefix=b").data) == [{"name": "b", "size": 2}]


@pytest.fixture
def demo_api(app: Flask) -> object:
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("demo_api")


@schema.parametrize()
@settings(max_examples=30, suppress_health_check=list(HealthCheck), deadline=None)
def test_demo_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_request_log_redacts_secret_path_parameters(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("demo")

    @app.get("/seed/<mac>/<token>/user-data")
    def seed(mac: str, token: str) -> str:
        return "ok"

    install_observability(app, "demo")
    with caplog.at_level(logging.INFO, logger="homelab.http"):
        assert app.test_client().get("/seed/52-54-00-00-00-01/s3cr3t-value/user-data").status_code == 200
    paths = [r.__dict__["path"] for r in caplog.records if r.message == "request"]
    assert paths == ["/seed/52-54-00-00-00-01/[redacted]/user-data"]
    assert "s3cr3t-value" not in caplog.text


def test_request_log_redacts_configured_secret_paths_of_unmatched_requests(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("demo")

    @app.get("/seed/<mac>/<token>/user-data")
    def seed(mac: str, token: str) -> str:
        return "ok"

    install_observability(app, "demo")
    redact_paths(app, r"^/seed/[^/]+/(?P<secret>[^/]+)")
    with caplog.at_level(logging.INFO, logger="homelab.http"):
        assert app.test_client().post("/seed/52-54-00-00-00-01/s3cr3t-value/user-data").status_code == 405
        assert app.test_client().get("/seed/52-54-00-00-00-01/s3cr3t-value/other").status_code == 404
    paths = [r.__dict__["path"] for r in caplog.records if r.message == "request"]
    assert paths == ["/seed/52-54-00-00-00-01/[redacted]/user-data", "/seed/52-54-00-00-00-01/[redacted]/other"]
    assert "s3cr3t-value" not in caplog.text
