"""The whole API fuzzed from its own OpenAPI document (schemathesis), on a real SQLite state file."""

from __future__ import annotations

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings


def test_openapi_documents_every_endpoint(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert {
        "/api/v1/machines",
        "/api/v1/machines/{mac}",
        "/api/v1/machines/{mac}/reinstall",
        "/api/v1/machines/{mac}/arm",
        "/api/v1/machines/{mac}/wake",
        "/api/v1/events",
        "/api/v1/boot/{mac}",
        "/seed/{mac}/{token}/user-data",
        "/seed/{mac}/{token}/meta-data",
        "/seed/{mac}/{token}/vendor-data",
        "/seed/{mac}/{token}/network-config",
        "/seed/{mac}/{token}/installed",
        "/seed/{mac}/{token}/events",
    } == set(doc["paths"])
    user_data = doc["paths"]["/seed/{mac}/{token}/user-data"]["get"]["responses"]
    assert set(user_data["200"]["content"]) == {"text/cloud-config"}
    assert "403" in user_data


autoinstall_api = schemathesis.pytest.from_fixture("autoinstall_api_schema")


@autoinstall_api.parametrize()
@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
def test_autoinstall_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()
