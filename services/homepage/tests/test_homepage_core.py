"""Annotations, the static list, health and ordering: pure logic, no I/O."""

from __future__ import annotations

import pytest
from homepage_factories import endpoint_slice, homepage, ingress, pod, service

from homelab_homepage.core import (
    Card,
    ClusterIndex,
    HealthTarget,
    ProbeResult,
    app_from_ingress,
    apps_from_static,
    combine,
    filter_groups,
    matches,
    order_groups,
    parse_selector,
    pods_health,
    selector_matches,
    slim_endpoint_slice,
    slim_ingress,
    slim_pod,
    slim_service,
)
from homelab_homepage.kube import LAST_APPLIED


def parse(obj: dict, instance: str = ""):  # type: ignore[no-untyped-def]
    return app_from_ingress(slim_ingress(obj), instance)


def test_gethomepage_defaults_follow_gethomepage() -> None:
    app, problems = parse(ingress("gitea", host="git.example.com", path="/ui", tls=True, annotations=homepage()))
    assert problems == []
    assert app is not None
    assert (app.name, app.group, app.href, app.weight) == ("gitea", "Kubernetes", "https://git.example.com/ui", 0)
    assert app.target == HealthTarget("apps", service="gitea")
    plain, _ = parse(ingress("wiki", host="wiki.lan", annotations=homepage()))
    assert plain is not None
    assert plain.href == "http://wiki.lan/"


def test_gethomepage_annotations_override_defaults() -> None:
    annotations = homepage(
        name="Git", group="Dev", icon="si-gitea", description="Code", href="https://code.example.com", weight="-5"
    )
    app, problems = parse(ingress("gitea", host="git.example.com", annotations=annotations))
    assert problems == []
    assert app is not None
    assert (app.name, app.group, app.icon, app.description, app.href, app.weight) == (
        "Git", "Dev", "si-gitea", "Code", "https://code.example.com", -5,
    )  # fmt: skip


@pytest.mark.parametrize("value", ["True", "yes", "1", " true", ""])
def test_enabled_must_be_exactly_true_and_a_near_miss_is_a_visible_error(value: str) -> None:
    app, problems = parse(ingress("gitea", host="g.lan", annotations={"gethomepage.dev/enabled": value}))
    assert app is None
    assert [(p.kind, p.severity) for p in problems] == [("bad-enabled", "error")]
    assert "exactly" in problems[0].message


def test_enabled_false_or_absent_hides_the_app_silently() -> None:
    assert parse(ingress("a", host="a.lan", annotations={"gethomepage.dev/enabled": "false"})) == (None, [])
    assert parse(ingress("a", host="a.lan")) == (None, [])


def test_misspelled_key_is_listed_with_a_suggestion_even_when_it_hides_the_app() -> None:
    app, problems = parse(ingress("a", host="a.lan", annotations={"gethomepage.dev/enable": "true"}))
    assert app is None
    assert [p.kind for p in problems] == ["unknown-key"]
    assert "did you mean gethomepage.dev/enabled?" in problems[0].message
    _, problems = parse(ingress("a", host="a.lan", annotations=homepage(gorup="Dev")))
    assert "did you mean gethomepage.dev/group?" in problems[0].message


def test_widgets_and_ping_are_reported_as_unsupported_not_unknown() -> None:
    _, problems = parse(ingress("a", host="a.lan", annotations=homepage(**{"widget.type": "gitea", "ping": "a.lan"})))
    assert sorted(p.kind for p in problems) == ["unsupported", "unsupported"]


def test_bad_values_are_errors_naming_the_key() -> None:
    annotations = homepage(weight="heavy", siteMonitor="ftp://x", href="javascript:alert(1)", pod_selector="a=(b")
    app, problems = parse(ingress("a", host="a.lan", annotations=annotations))
    assert app is not None
    assert app.href is None  # a javascript: URL never becomes a link
    assert app.site_monitor is None
    assert app.weight == 0
    assert {p.key for p in problems} == {"href", "weight", "siteMonitor", "pod-selector"}


def test_app_and_pod_selector_choose_pods_instead_of_the_backend_service() -> None:
    app, _ = parse(ingress("grafana", host="g.lan", annotations=homepage(app="grafana-ui")))
    assert app is not None
    assert app.target is not None
    assert app.target.by_pods
    assert app.target.selector == (("app.kubernetes.io/name", "=", ("grafana-ui",)),)
    app, _ = parse(ingress("grafana", host="g.lan", annotations=homepage(pod_selector="app in (a,b),tier!=db")))
    assert app is not None
    assert app.target is not None
    assert app.target.selector == (("app", "in", ("a", "b")), ("tier", "!=", ("db",)))


def test_no_host_and_no_href_is_a_warning_and_a_card_without_link() -> None:
    app, problems = parse(ingress("a", annotations=homepage()))
    assert app is not None
    assert app.href is None
    assert [p.kind for p in problems] == ["bad-href"]


def test_instance_filtering_and_per_instance_overrides() -> None:
    annotations = homepage(instance="internal,lab", **{"instance.lab.name": "Lab Git"})
    assert parse(ingress("a", host="a.lan", annotations=annotations), "public")[0] is None
    app, problems = parse(ingress("a", host="a.lan", annotations=annotations), "lab")
    assert problems == []
    assert app is not None
    assert app.name == "Lab Git"
    _, problems = parse(ingress("a", host="a.lan", annotations=homepage(**{"instance.lab.nmae": "x"})), "lab")
    assert [p.kind for p in problems] == ["unknown-key"]


def test_hajimari_annotations_are_honoured() -> None:
    annotations = {
        "hajimari.io/enable": "true",
        "hajimari.io/appName": "Media",
        "hajimari.io/icon": "mdi:television-play",
        "hajimari.io/url": "https://media.lan",
        "hajimari.io/info": "Films",
    }
    app, problems = parse(ingress("jellyfin", namespace="media", host="j.lan", annotations=annotations))
    assert problems == []
    assert app is not None
    assert (app.convention, app.name, app.group, app.icon, app.href, app.description) == (
        "hajimari", "Media", "media", "mdi-television-play", "https://media.lan", "Films",
    )  # fmt: skip


def test_forecastle_annotations_are_honoured_and_gethomepage_wins_when_both_enable() -> None:
    annotations = {"forecastle.stakater.com/expose": "true", "forecastle.stakater.com/appName": "Vault"}
    app, problems = parse(ingress("vault", namespace="sec", host="v.lan", annotations=annotations))
    assert problems == []
    assert app is not None
    assert (app.convention, app.name, app.group) == ("forecastle", "Vault", "sec")
    both, _ = parse(ingress("vault", host="v.lan", annotations=annotations | homepage(name="V")))
    assert both is not None
    assert (both.convention, both.name) == ("gethomepage", "V")
    _, problems = parse(
        ingress("vault", host="v.lan", annotations=annotations | {"forecastle.stakater.com/exposed": "1"})
    )
    assert "did you mean forecastle.stakater.com/expose?" in problems[0].message


def test_static_list_reads_gethomepage_services_yaml() -> None:
    document = [
        {"Network": [{"Router": {"href": "http://192.168.1.1/", "icon": "mdi-router-network", "weight": -1}},
                     {"NAS": {"description": "Files", "siteMonitor": "http://nas.lan:5000"}}]},
        {"Bookmarks": [{"Docs": {"href": "https://docs.example.com"}}]},
    ]  # fmt: skip
    apps, problems = apps_from_static(document, "services.yaml")
    assert problems == []
    assert [(a.group, a.name, a.weight) for a in apps] == [("Network", "Router", -1), ("Network", "NAS", 0),
                                                            ("Bookmarks", "Docs", 0)]  # fmt: skip
    assert apps[1].site_monitor == "http://nas.lan:5000"


def test_static_list_mistakes_name_their_place() -> None:
    document = [{"Net": [{"Router": {"hrf": "http://x", "href": "file:///etc/passwd", "weight": "1"}}]}, "oops"]
    apps, problems = apps_from_static(document, "services.yaml")
    assert [a.href for a in apps] == [None]
    messages = " | ".join(p.message for p in problems)
    assert "[0].Net[0].Router: unknown field 'hrf' (did you mean href?)" in messages
    assert "[0].Net[0].Router.href" in messages
    assert "[0].Net[0].Router.weight" in messages
    assert "[1]: each group must be" in messages
    assert apps_from_static({"not": "a list"}, "s.yaml")[1][0].message.startswith("top level")


def index(*objects: dict) -> ClusterIndex:  # type: ignore[type-arg]
    kinds = {"Service": slim_service, "EndpointSlice": slim_endpoint_slice, "Pod": slim_pod}
    slim = [(o["kind"], kinds[o["kind"]](o)) for o in objects]
    return ClusterIndex.build(
        [s for k, s in slim if k == "Service"], [s for k, s in slim if k == "EndpointSlice"],
        [s for k, s in slim if k == "Pod"],
    )  # type: ignore[arg-type]  # fmt: skip


TARGET = HealthTarget("apps", service="web")


def test_all_endpoints_ready_is_up_some_is_degraded_none_is_down() -> None:
    assert index(service("web"), endpoint_slice("web", [True, True])).cluster_health(TARGET, True).status == "up"
    degraded = index(service("web"), endpoint_slice("web", [True, False])).cluster_health(TARGET, True)
    assert (degraded.status, degraded.reason) == ("degraded", "1/2 endpoints ready")
    assert index(service("web"), endpoint_slice("web", [False])).cluster_health(TARGET, True).status == "down"
    assert index(service("web")).cluster_health(TARGET, True).reason == "no endpoints"


def test_terminating_endpoints_do_not_count_and_dual_stack_slices_count_a_pod_once() -> None:
    health = index(service("web"), endpoint_slice("web", [True], terminating=2)).cluster_health(TARGET, True)
    assert (health.status, health.ready, health.total) == ("up", 1, 1)
    v6 = endpoint_slice("web", [True, False], suffix="v6")
    health = index(service("web"), endpoint_slice("web", [True, False]), v6).cluster_health(TARGET, True)
    assert (health.ready, health.total) == (1, 2)


def test_missing_service_is_down_external_name_has_no_cluster_signal_and_unsynced_is_unknown() -> None:
    assert index().cluster_health(TARGET, True).reason == "Service apps/web not found"
    assert index(service("web", type_="ExternalName")).cluster_health(TARGET, True) is None
    assert index().cluster_health(TARGET, False).status == "unknown"
    assert index().cluster_health(None, True) is None


def test_pod_selector_counts_ready_running_pods_and_ignores_finished_ones() -> None:
    target = HealthTarget("apps", selector=parse_selector("app=web"))
    objects = [pod("w1", {"app": "web"}, True), pod("w2", {"app": "web"}, False), pod("x", {"app": "other"}, False)]
    objects.append(pod("job", {"app": "web"}, False, phase="Succeeded"))
    health = index(*objects).cluster_health(target, True)
    assert (health.status, health.ready, health.total) == ("degraded", 1, 2)


def test_selector_grammar() -> None:
    selector = parse_selector("a=1, b==2, c!=3, d in (x, y), e notin (z), f, !g")
    assert selector_matches(selector, {"a": "1", "b": "2", "c": "4", "d": "y", "e": "w", "f": ""})
    assert not selector_matches(selector, {"a": "1", "b": "2", "c": "4", "d": "y", "e": "w", "f": "", "g": "1"})
    assert not selector_matches(selector, {"a": "1", "b": "2", "c": "3", "d": "y", "f": ""})
    for bad in ("", "a=1,,b=2", "a b", "=x"):
        with pytest.raises(ValueError, match="term"):
            parse_selector(bad)


OK = ProbeResult("http://x", True, 200, 12.5)
FAIL = ProbeResult("http://x", False, None, 5000.0, "timed out")


def test_site_monitor_combines_with_readiness() -> None:
    up, down = pods_health(2, 2), pods_health(0, 2)
    assert combine(up, None, None) == up
    assert combine(None, None, None).status == "unknown"
    assert combine(None, "http://x", None).reason == "waiting for the first probe"
    assert (combine(up, "http://x", OK).status, combine(up, "http://x", OK).latency_ms) == ("up", 12.5)
    assert combine(up, "http://x", FAIL).status == "degraded"
    assert combine(down, "http://x", OK).status == "degraded"
    assert combine(down, "http://x", FAIL).status == "down"
    assert combine(None, "http://x", OK).status == "up"
    assert combine(None, "http://x", FAIL).reason == "siteMonitor: timed out"


def card(name: str, group: str, description: str = "") -> Card:
    return Card(
        id=f"x/{group}/{name}", name=name, group=group, href=None, icon_url=None, letter=name[0],
        description=description,
        status="up", reason="", ready=None, total=None, latency_ms=None, site_monitor=None, source="s",
        convention="static", search=f"{name} {description} {group}".lower(),
    )  # fmt: skip


def test_groups_are_ordered_by_weight_then_name_and_cards_likewise() -> None:
    cards = [card("b", "Media"), card("a", "Media"), card("z", "Infra"), card("y", "Dev")]
    weights = {"x/Media/b": -1, "x/Infra/z": 5}
    groups = order_groups(cards, {"Dev": 10}, weights)
    assert [(g.name, [c.name for c in g.cards]) for g in groups] == [
        ("Media", ["b", "a"]), ("Infra", ["z"]), ("Dev", ["y"]),
    ]  # fmt: skip


def test_search_needs_every_term_in_any_field() -> None:
    git = card("Gitea", "Dev", "source code")
    assert matches(git, "gitea")
    assert matches(git, "CODE dev")
    assert matches(git, "  ")
    assert not matches(git, "gitea media")
    groups = order_groups([git, card("Plex", "Media")], {}, {})
    assert [g.name for g in filter_groups(groups, "plex")] == ["Media"]


@pytest.mark.parametrize(
    ("kind", "obj", "slim"),
    [
        ("ingress", ingress("a", host="a.lan", tls=True, annotations=homepage()), slim_ingress),
        ("pod", pod("p", {"app": "web"}, True), slim_pod),
        ("slice", endpoint_slice("web", [True, False], terminating=1), slim_endpoint_slice),
        ("service", service("web", type_="ExternalName"), slim_service),
    ],
)
def test_an_update_to_fields_the_record_does_not_hold_is_no_change(kind: str, obj: dict, slim) -> None:  # type: ignore[no-untyped-def, type-arg]
    """The watch caches keep these records (not the JSON), and compare them to tell changes from no-ops."""
    noisy = obj | {"metadata": obj["metadata"] | {"managedFields": [{"manager": "kubectl"}], "resourceVersion": "7"}}
    record = slim(obj)
    assert slim(noisy) == record
    assert not hasattr(record, "__dict__")  # slotted: 2,500 of them for 500 apps


def test_an_ingress_record_keeps_only_the_conventions_annotations() -> None:
    """kubectl's last-applied-configuration (the whole object again) and other tools' keys are never read."""
    ours = homepage(name="Git") | {"hajimari.io/enable": "true", "forecastle.stakater.com/expose": "true"}
    obj = ingress("a", host="a.lan", annotations=ours | {LAST_APPLIED: "{}", "nginx.ingress.kubernetes.io/x": "y"})
    assert dict(slim_ingress(obj).annotations) == ours
