"""The HTTP side: the page, search without JavaScript, diagnostics, the JSON API, probes against real servers."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from homepage_factories import endpoint_slice, homepage, ingress, parts, service
from hypothesis import HealthCheck, settings

from homelab_common.testing import api_schema
from homelab_homepage.core import slim_endpoint_slice, slim_ingress, slim_service
from homelab_homepage.probe import HttpProber, ProbeLoop

MakeApp = Callable[..., Flask]


def add_app(app: Flask, key: str, ready: list[bool], **annotations: str) -> None:
    """An Ingress ``key`` with gethomepage annotations, its Service, and endpoints with the given readiness."""
    name = key
    catalog = parts(app).catalog
    obj = ingress(name, host=f"{name}.lan", annotations=homepage(**annotations))
    catalog.apply("ingress", f"apps/{name}", slim_ingress(obj))
    catalog.apply("service", f"apps/{name}", slim_service(service(name)))
    catalog.apply("slice", f"apps/{name}-x", slim_endpoint_slice(endpoint_slice(name, ready)))


def test_page_lists_apps_by_group_with_status(make_app: MakeApp) -> None:
    app = make_app(group_weights={"Media": -1})
    add_app(app, "gitea", [True], group="Dev", description="Git hosting")
    add_app(app, "jellyfin", [True, False], group="Media")
    add_app(app, "broken", [False], group="Dev")
    html = app.test_client().get("/").get_data(as_text=True)
    assert html.index('data-group="Media"') < html.index('data-group="Dev"')
    assert 'class="card status-up"' in html
    assert "Git hosting" in html
    assert "1/2 endpoints ready" in html
    assert 'class="card status-down"' in html
    assert "1 up" in html
    assert "1 degraded" in html
    assert "1 down" in html


def test_annotation_values_are_escaped_and_bad_links_are_dropped(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "evil", [True], name='<script>alert("x")</script>', description="<img src=x onerror=alert(1)>",
            href="javascript:alert(1)", group="</h2><b>")  # fmt: skip
    html = app.test_client().get("/").get_data(as_text=True)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "javascript:" not in html


def test_search_works_without_javascript_as_a_get_form(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "gitea", [True], group="Dev", description="source code")
    add_app(app, "plex", [True], group="Media")
    client = app.test_client()
    html = client.get("/?q=CODE").get_data(as_text=True)
    assert 'data-id="ingress/apps/gitea"' in html
    assert "ingress/apps/plex" not in html
    assert 'value="CODE"' in html
    nothing = client.get("/?q=nothing-like-this").get_data(as_text=True)
    assert 'id="no-match" hidden' not in nothing
    assert client.get("/?q=" + "x" * 201).status_code == 400


def test_page_is_prebuilt_gzipped_and_served_with_security_headers(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "gitea", [True])
    client = app.test_client()
    response = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"gitea" in gzip.decompress(response.data)
    plain = client.get("/")  # kept gzipped only; a client without gzip gets it decompressed
    assert "Content-Encoding" not in plain.headers
    assert plain.data == gzip.decompress(response.data)
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    with client.get("/static/icons/si/gitea.svg") as icon:
        assert icon.status_code == 200


def test_fragment_answers_304_until_something_changes(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "gitea", [True])
    client = app.test_client()
    first = client.get("/fragment")
    etag = first.headers["ETag"]
    assert client.get("/fragment", headers={"If-None-Match": etag}).status_code == 304
    parts(app).catalog.apply("slice", "apps/gitea-x", slim_endpoint_slice(endpoint_slice("gitea", [False])))
    changed = client.get("/fragment", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert b"status-down" in changed.data


def test_mistakes_are_listed_logged_and_counted(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    catalog = parts(app).catalog
    with caplog.at_level("WARNING"):
        catalog.apply(
            "ingress",
            "apps/a",
            slim_ingress(ingress("a", host="a.lan", annotations={"gethomepage.dev/enabled": "yes"})),
        )
        catalog.apply(
            "ingress", "apps/b", slim_ingress(ingress("b", host="b.lan", annotations=homepage(descripton="x")))
        )
    client = app.test_client()
    page = client.get("/diagnostics").get_data(as_text=True)
    assert "ingress/apps/a" in page
    assert "must be exactly" in page
    assert "did you mean gethomepage.dev/description?" in page
    assert 'class="badge">2<' in client.get("/").get_data(as_text=True)
    kinds = {d["kind"] for d in client.get("/api/v1/diagnostics").get_json()["diagnostics"]}
    assert kinds == {"bad-enabled", "unknown-key"}
    assert {r.kind for r in caplog.records if r.getMessage() == "configuration mistake"} == kinds  # type: ignore[attr-defined]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'homelab_homepage_mistakes_total{kind="bad-enabled"}' in metrics
    assert 'homelab_homepage_diagnostics{kind="unknown-key"} 1.0' in metrics


def test_api_filters_apps_and_metrics_count_them(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "gitea", [True], group="Dev")
    add_app(app, "plex", [False], group="Media")
    client = app.test_client()
    everything = client.get("/api/v1/apps").get_json()
    assert [a["name"] for a in everything["apps"]] == ["gitea", "plex"]
    assert everything["apps"][1]["health"] == {"status": "down", "reason": "0/1 endpoints ready", "ready": 0,
                                               "total": 1, "latency_ms": None}  # fmt: skip
    assert [a["name"] for a in client.get("/api/v1/apps?status=down").get_json()["apps"]] == ["plex"]
    assert [a["name"] for a in client.get("/api/v1/apps?group=Dev").get_json()["apps"]] == ["gitea"]
    assert client.get("/api/v1/apps?status=sideways").status_code == 400
    assert client.get("/api/v1/summary").get_json()["by_status"] == {"up": 1, "degraded": 0, "down": 1, "unknown": 0}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'homelab_homepage_apps{source="ingress"} 2.0' in metrics
    assert 'homelab_homepage_apps_by_status{status="down"} 1.0' in metrics


def test_static_list_is_loaded_reloaded_and_a_broken_file_keeps_the_last_good_apps(
    make_app: MakeApp, tmp_path: Path
) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("- Network:\n    - Router:\n        href: http://192.168.1.1/\n        icon: mdi-router-network\n")
    app = make_app(static_apps_file=path)
    static = parts(app).static
    assert static is not None
    client = app.test_client()
    assert "/static/icons/mdi/router-network.svg" in client.get("/").get_data(as_text=True)
    path.write_text("- Network: [unclosed\n")
    static.load()
    assert "Router" in client.get("/").get_data(as_text=True)
    assert "cannot read" in client.get("/diagnostics").get_data(as_text=True)
    path.write_text("- Storage:\n    - NAS:\n        description: files\n")
    static.load()
    html = client.get("/").get_data(as_text=True)
    assert "NAS" in html
    assert "Router" not in html
    assert client.get("/api/v1/diagnostics").get_json()["diagnostics"] == []


def test_unknown_icon_is_a_diagnostic_and_app_names_find_their_icon(make_app: MakeApp) -> None:
    app = make_app()
    add_app(app, "grafana", [True])
    add_app(app, "thing", [True], icon="thing.png")
    client = app.test_client()
    assert "/static/icons/si/grafana.svg" in client.get("/").get_data(as_text=True)
    diagnostics = client.get("/api/v1/diagnostics").get_json()["diagnostics"]
    assert [(d["kind"], d["source"]) for d in diagnostics] == [("unknown-icon", "ingress/apps/thing")]


def test_probe_follows_gethomepage_rule_against_a_real_server(site: str, closed_port_url: str) -> None:
    probe = HttpProber(timeout=0.5)
    ok = probe(f"{site}/ok")
    assert (ok.ok, ok.status_code) == (True, 200)
    assert ok.latency_ms is not None
    assert probe(f"{site}/nohead").status_code == 200  # HEAD refused (405 > 403), so GET
    assert (probe(f"{site}/broken").ok, probe(f"{site}/broken").status_code) == (False, 500)
    assert probe(f"{site}/forbidden").ok
    assert probe(f"{site}/moved").status_code == 302
    refused = probe(closed_port_url)
    assert (refused.ok, refused.status_code, refused.error) == (False, None, "connection refused or unreachable")
    slow = probe(f"{site}/slow")
    assert (slow.ok, slow.error) == (False, "timed out")


def test_site_monitor_status_and_latency_show_on_the_page(make_app: MakeApp, site: str) -> None:
    app = make_app(start=True, probe_interval_seconds=3600)
    add_app(app, "gitea", [True], siteMonitor=f"{site}/ok")
    add_app(app, "wiki", [True], siteMonitor=f"{site}/broken")
    catalog = parts(app).catalog
    assert catalog.wait_for(lambda s: s.model.counts["degraded"] == 1 and s.model.counts["up"] == 1, timeout=30)
    cards = {c.name: c for c in catalog.snapshot.model.cards}
    assert cards["gitea"].latency_ms is not None
    assert "siteMonitor failed: HTTP 500" in cards["wiki"].reason
    assert " ms</span>" in app.test_client().get("/").get_data(as_text=True)


def test_unreachable_href_is_a_diagnostic(make_app: MakeApp, site: str, closed_port_url: str) -> None:
    app = make_app(start=True, href_check_interval_seconds=3600)
    add_app(app, "dead", [True], href=closed_port_url)
    add_app(app, "alive", [True], href=f"{site}/ok")
    catalog = parts(app).catalog
    assert catalog.wait_for(lambda s: any(d.kind == "unreachable-href" for d in s.model.diagnostics), timeout=30)
    unreachable = [d for d in catalog.snapshot.model.diagnostics if d.kind == "unreachable-href"]
    assert [d.source for d in unreachable] == ["ingress/apps/dead"]


def test_probe_loop_reports_changes_once_per_round() -> None:
    answers = {"http://a": True}
    calls: list[str] = []

    def fake(url: str):  # type: ignore[no-untyped-def]
        from homelab_homepage.core import ProbeResult

        calls.append(url)
        return ProbeResult(url, answers[url], 200 if answers[url] else 500, 1.0, "", time.time())

    loop = ProbeLoop("t", lambda: ["http://a", "http://a"], lambda: None, fake, 60, 2)
    assert loop.run_once() is True
    assert loop.run_once() is False
    answers["http://a"] = False
    assert loop.run_once() is True
    assert calls == ["http://a"] * 3


@pytest.fixture
def homepage_api(make_app: MakeApp) -> object:
    app = make_app()
    add_app(app, "gitea", [True], group="Dev", description="<b>code</b>")
    add_app(app, "plex", [True, False], group="Media")
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("homepage_api")


@schema.parametrize()
@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
def test_homepage_api_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    case.call_and_validate()
