"""A real browser (Debian's chromium driven by playwright) against the real app served on 127.0.0.1.

The app runs with its background threads (page-model builder, probes) behind a real WSGI server thread; the
apps are fed into its catalog the way the Kubernetes adapter feeds it (test_homepage_kube.py does the same
through the real client and the emulator). A screenshot is written to artifacts/homepage.png.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from homepage_factories import endpoint_slice, homepage, ingress, parts, service
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from homelab_homepage.app import create_app
from homelab_homepage.catalog import Catalog
from homelab_homepage.core import apps_from_static, slim_endpoint_slice, slim_ingress, slim_service
from homelab_homepage.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (scripts/test-debs.txt)")

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def feed(catalog: Catalog, key: str, ready: list[bool], **annotations: str) -> None:
    catalog.apply("ingress", f"apps/{key}", slim_ingress(ingress(key, host=f"{key}.home.arpa", tls=True,
                                                                 annotations=homepage(**annotations))))  # fmt: skip
    catalog.apply("service", f"apps/{key}", slim_service(service(key)))
    catalog.apply("slice", f"apps/{key}-x", slim_endpoint_slice(endpoint_slice(key, ready)))


def populate(catalog: Catalog) -> None:
    feed(catalog, "gitea", [True, True], name="Gitea", group="Development", description="Git hosting", weight="-1")
    feed(catalog, "woodpecker", [True], name="Woodpecker", group="Development", description="CI pipelines",
         icon="mdi-console")  # fmt: skip
    feed(catalog, "registry", [True, False], name="Registry", group="Development", description="Container images",
         icon="si-docker")  # fmt: skip
    feed(catalog, "grafana", [True], name="Grafana", group="Observability", description="Dashboards")
    feed(catalog, "prometheus", [True, True], name="Prometheus", group="Observability", description="Metrics")
    feed(catalog, "alertmanager", [False], name="Alertmanager", group="Observability", description="Alert routing",
         icon="mdi-shield-check")  # fmt: skip
    feed(catalog, "jellyfin", [True], name="Jellyfin", group="Media", description="Films and series")
    feed(catalog, "immich", [True], name="Immich", group="Media", description="Photos")
    feed(catalog, "evil", [True], name="Notes " + XSS, group="Media", description=XSS)
    feed(catalog, "argocd", [True], name="Argo CD", group="Platform", description="GitOps", icon="si-argo")
    feed(catalog, "authentik", [True, True, True], name="Authentik", group="Platform", description="Single sign-on")
    feed(catalog, "wiki", [True], name="Wiki", group="Documents", description="Notes", gorup="Docs", icon="wiki.png")
    apps, _ = apps_from_static(
        [{"Network": [{"Router": {"href": "http://192.168.1.1/", "icon": "mdi-router-network",
                                  "description": "Home router"}},
                      {"NAS": {"href": "http://nas.home.arpa:5000", "icon": "mdi-nas", "description": "Storage"}}]}],
        "services.yaml",
    )  # fmt: skip
    catalog.set_static(apps, [])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Flask]]:
    settings = Settings(kubernetes=False, href_check_interval_seconds=0, refresh_seconds=1, title="Homelab",
                        group_weights={"Development": -10, "Network": 20})  # fmt: skip
    app = create_app(settings)
    populate(parts(app).catalog)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    parts(app).stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=15_000)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def visible_names(page: Any) -> list[str]:
    return [n.strip() for n in page.locator("li.card:visible .name").all_inner_texts()]


def test_page_lists_apps_by_group_in_weight_order_with_health(page: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    page.goto(url)
    groups = page.locator("section.group").evaluate_all("sections => sections.map(s => s.dataset.group)")
    assert groups == ["Development", "Documents", "Media", "Observability", "Platform", "Network"]
    assert visible_names(page)[:3] == ["Gitea", "Registry", "Woodpecker"]
    registry = page.locator('li[data-id="ingress/apps/registry"]')
    assert registry.get_attribute("data-status") == "degraded"
    assert "1/2 endpoints ready" in registry.inner_text()
    assert page.locator('li[data-id="ingress/apps/alertmanager"]  .status .label').text_content() == "down"
    assert page.locator('li[data-id="ingress/apps/gitea"]  .status .label').text_content() == "up"
    assert page.locator('li[data-id="static/Network/Router"]  .status .label').text_content() == "unknown"
    assert page.locator('li[data-id="ingress/apps/gitea"] a').get_attribute("href") == "https://gitea.home.arpa/"
    page.set_viewport_size({"width": 1280, "height": 1000})
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "homepage.png"), full_page=True)


def test_search_filters_as_you_type(page: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    page.goto(url)
    page.locator("#q").press_sequentially("jelly")
    expect(page.locator("li.card:visible")).to_have_count(1)
    assert visible_names(page) == ["Jellyfin"]
    assert page.locator("section.group:visible").get_attribute("data-group") == "Media"
    assert page.url.endswith("?q=jelly")
    page.locator("#q").fill("gitea media")  # every term must match
    expect(page.locator("li.card:visible")).to_have_count(0)
    assert page.locator("#no-match").is_visible()
    page.locator("#q").fill("")
    expect(page.locator("li.card:visible")).to_have_count(14)


def test_search_works_without_javascript(browser: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(url)
        assert page.locator("#theme-toggle").is_hidden()
        page.locator("#q").fill("photos")
        page.locator("#q").press("Enter")
        page.wait_for_url("**/?q=photos")
        assert [n.strip() for n in page.locator("li.card .name").all_inner_texts()] == ["Immich"]
    finally:
        context.close()


def test_script_in_an_annotation_is_rendered_inert(page: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    page.wait_for_load_state("load")
    evil = page.locator('li[data-id="ingress/apps/evil"]')
    assert XSS in evil.locator(".desc").inner_text()  # shown as text, not markup
    assert evil.locator("script, img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.locator("#q").fill("pwned")  # the live refresh and search re-render cards: still inert
    expect(page.locator("li.card:visible")).to_have_count(1)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_theme_follows_the_os_and_the_toggle_switches_it(browser: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    context = browser.new_context(color_scheme="dark", viewport={"width": 390, "height": 844})
    page = context.new_page()
    background = "getComputedStyle(document.body).backgroundColor"
    try:
        page.goto(url)
        dark = page.evaluate(background)
        assert page.locator("#theme-toggle").inner_text() == "Theme: auto"
        page.screenshot(path=str(ARTIFACTS / "homepage-phone-dark.png"))
        page.locator("#theme-toggle").click()
        assert page.locator("html").get_attribute("data-theme") == "light"
        light = page.evaluate(background)
        assert light != dark
        page.reload()  # the choice is remembered
        assert page.evaluate(background) == light
        page.locator("#theme-toggle").click()
        assert page.evaluate(background) == dark
        assert page.locator("#theme-toggle").inner_text() == "Theme: dark"
    finally:
        context.close()


def test_page_follows_cluster_changes_without_a_reload(page: Any, served: tuple[str, Flask]) -> None:
    url, app = served
    catalog = parts(app).catalog
    page.goto(url)
    feed(catalog, "nextcloud", [False], name="Nextcloud", group="Media", description="Files")
    card = page.locator('li[data-id="ingress/apps/nextcloud"]')
    card.wait_for()
    assert card.get_attribute("data-status") == "down"
    catalog.apply("slice", "apps/nextcloud-x", slim_endpoint_slice(endpoint_slice("nextcloud", [True])))
    expect(card).to_have_attribute("data-status", "up")
    catalog.apply("ingress", "apps/nextcloud", None)
    card.wait_for(state="detached")


def test_diagnostics_view_lists_the_mistakes(page: Any, served: tuple[str, Flask]) -> None:
    url, _ = served
    page.goto(url)
    assert page.locator(".diag-link .badge").inner_text() == "2"
    page.locator(".diag-link").click()
    page.wait_for_url("**/diagnostics")
    rows = page.locator("table.diagnostics tbody tr").all_inner_texts()
    assert any("did you mean gethomepage.dev/group?" in row for row in rows)
    assert any("wiki.png" in row for row in rows)
    page.screenshot(path=str(ARTIFACTS / "homepage-diagnostics.png"))


def test_page_follows_the_cluster_through_the_emulator(browser: Any) -> None:
    """The whole path: real client → emulator → watch caches → prebuilt page → the browser's live refresh."""
    import kubernetes.client

    from homelab_common.k8s.testing import KubeEmulator

    with KubeEmulator() as kube:
        api = kube.api_client()
        settings = Settings(kubernetes=True, href_check_interval_seconds=0, refresh_seconds=1)
        app = create_app(settings, api_client=kube.api_client())
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        page = browser.new_page()
        try:
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            kubernetes.client.CoreV1Api(api).create_namespaced_service("apps", service("gitea"))
            slices = kubernetes.client.DiscoveryV1Api(api)
            slices.create_namespaced_endpoint_slice("apps", endpoint_slice("gitea", [True]))
            ingresses = kubernetes.client.NetworkingV1Api(api)
            ingresses.create_namespaced_ingress(
                "apps", ingress("gitea", host="git.lan", annotations=homepage(name="Gitea"))
            )
            card = page.locator('li[data-id="ingress/apps/gitea"]')
            expect(card).to_have_attribute("data-status", "up")
            slices.replace_namespaced_endpoint_slice("gitea-abcde", "apps", endpoint_slice("gitea", [False]))
            expect(card).to_have_attribute("data-status", "down")
            ingresses.delete_namespaced_ingress("gitea", "apps")
            expect(card).to_have_count(0)
        finally:
            page.close()
            server.shutdown()
            parts(app).stop()
