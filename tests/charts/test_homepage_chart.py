"""charts/homepage: read-only RBAC, two replicas, an Ingress and a ServiceMonitor, the static list mounted."""

from pathlib import Path

import pytest
import yaml

from chart_harness import Document, find, render_chart

CHART = Path(__file__).resolve().parents[2] / "charts" / "homepage"


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return render_chart(CHART)


def test_rbac_is_cluster_wide_and_read_only_on_exactly_what_the_page_reads(docs: list[Document]) -> None:
    (role,) = find(docs, "ClusterRole")
    granted = {(g, r, v) for rule in role.body["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert granted == {
        (group, resource, verb)
        for group, resource in [
            ("networking.k8s.io", "ingresses"),
            ("discovery.k8s.io", "endpointslices"),
            ("", "pods"),
            ("", "services"),
        ]
        for verb in ("list", "watch")
    }
    (binding,) = find(docs, "ClusterRoleBinding")
    (account,) = find(docs, "ServiceAccount")
    assert binding.body["subjects"][0]["name"] == account.name


def test_two_replicas_with_the_token_mounted_and_the_static_list(docs: list[Document]) -> None:
    (deployment,) = find(docs, "Deployment")
    assert deployment.body["spec"]["replicas"] == 2
    pod = deployment.body["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HOMELAB_HOMEPAGE_STATIC_APPS_FILE"] == "/etc/homepage/services.yaml"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/etc/homepage" in mounts
    (config,) = find(docs, "ConfigMap")
    assert yaml.safe_load(config.body["data"]["services.yaml"]) == []


def test_its_own_ingress_serves_it_and_does_not_list_itself(docs: list[Document]) -> None:
    (ingress,) = find(docs, "Ingress")
    assert ingress.body["spec"]["rules"][0]["host"] == "home.home.arpa"
    assert ingress.body["spec"]["tls"][0]["secretName"] == "homepage-tls"
    annotations = ingress.body["metadata"].get("annotations") or {}
    assert not any(key.startswith("gethomepage.dev/") for key in annotations)


def test_metrics_are_scraped_and_alerted_on(docs: list[Document]) -> None:
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor.body["spec"]["endpoints"][0]["port"] == "http"
    (rule,) = find(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule.body["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"HomepageAppDown", "HomepageConfigurationMistakes", "HomepageWatchStale"}
    (budget,) = find(docs, "PodDisruptionBudget")
    assert budget.body["spec"]["minAvailable"] == 1


def test_ci_fixture_static_list_is_valid_for_the_service() -> None:
    from homelab_homepage.core import apps_from_static

    docs = render_chart(CHART, [CHART / "ci" / "ci-values.yaml"])
    (config,) = find(docs, "ConfigMap")
    apps, problems = apps_from_static(yaml.safe_load(config.body["data"]["services.yaml"]), "services.yaml")
    assert problems == []
    assert [a.name for a in apps] == ["Router", "NAS"]
