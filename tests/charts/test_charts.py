"""Every product chart (charts/*, gitops/**) lints, renders with each fixture, and validates strictly.

Plus the proof that the harness can fail: the can-fail fixture chart's broken/*-values.yaml each break one thing,
and the harness must name the chart, fixture, document and field.
"""

from pathlib import Path
from typing import Any

import kubernetes_validate.utils
import pytest
import yaml
from packaging.version import Version

from chart_harness import (
    KUBERNETES_VERSION,
    LIBRARY,
    REPO,
    ChartError,
    check_pod_security,
    discover_charts,
    fixture_name,
    fixture_values,
    lint_chart,
    pod_templates,
    render_chart,
    validate_documents,
)
from homelab_common.site import K3s

FIXTURES = Path(__file__).parent / "fixtures"
EVERYTHING = FIXTURES / "everything"
CAN_FAIL = FIXTURES / "can-fail"


def _cases(charts: list[Path]) -> list:
    return [
        pytest.param(chart, values, id=f"{chart.relative_to(REPO)}:{fixture_name(values)}")
        for chart in charts
        for values in fixture_values(chart)
    ]


def _assert_valid(chart: Path, values: Path | None) -> None:
    files = [values] if values else []
    lint_chart(chart, files)
    docs = render_chart(chart, files)
    assert docs, f"chart {chart.name} rendered no documents with {fixture_name(values)}"
    problems = validate_documents(docs) + check_pod_security(docs)
    assert not problems, "\n".join(problems)


#: gitops/ wrapper charts render only with the values generated from a site file, and most depend on upstream charts
#: that cannot be downloaded here: tests/gitops renders and validates them for the example site.
PRODUCT_CHARTS = [c for c in discover_charts() if not c.is_relative_to(REPO / "gitops")]


@pytest.mark.parametrize(("chart", "values"), _cases(PRODUCT_CHARTS))
def test_product_chart_renders_valid_secure_manifests(chart: Path, values: Path | None) -> None:
    _assert_valid(chart, values)


@pytest.mark.parametrize(("chart", "values"), _cases([EVERYTHING]))
def test_fixture_consumer_renders_valid_secure_manifests(chart: Path, values: Path | None) -> None:
    _assert_valid(chart, values)


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert not selector.get("matchExpressions"), "extend _selects for matchExpressions"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


@pytest.mark.parametrize("chart", PRODUCT_CHARTS, ids=lambda c: c.name)
def test_every_pod_of_a_product_chart_has_a_network_policy(chart: Path) -> None:
    """checkov CKV2_K8S_6: a pod no NetworkPolicy selects may talk to and be reached from anything."""
    docs = render_chart(chart)
    policies = [d.body for d in docs if d.kind == "NetworkPolicy"]
    for doc in docs:
        if not list(pod_templates(doc)):
            continue
        spec = doc.body["spec"]
        template = spec["jobTemplate"]["spec"]["template"] if doc.kind == "CronJob" else spec["template"]
        labels = template["metadata"]["labels"]
        assert any(_selects(p, labels) for p in policies), f"{chart.name}: {doc.ident} has no NetworkPolicy"


def test_the_bootstrap_job_may_reach_exactly_dns_the_api_and_gitea() -> None:
    (policy,) = [d.body for d in render_chart(REPO / "charts" / "bootstrap") if d.kind == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    ports = {
        (
            r["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] if r.get("to") else "*",
            p["port"],
            p["protocol"],
        )
        for r in spec["egress"]
        for p in r["ports"]
    }
    assert ports == {
        ("kube-system", 53, "UDP"),
        ("kube-system", 53, "TCP"),
        ("*", 443, "TCP"),
        ("*", 6443, "TCP"),
        ("gitea", 3000, "TCP"),
    }


def _depends_on_library(chart: Path) -> bool:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    return any(dep.get("name") == "library" for dep in meta.get("dependencies") or [])


@pytest.mark.parametrize(
    "chart", [c for c in [*discover_charts(), EVERYTHING] if _depends_on_library(c)], ids=lambda c: c.name
)
def test_library_consumer_carries_the_library_values_schema(chart: Path) -> None:
    schema = chart / "values.schema.json"
    expected = (LIBRARY / "values.schema.json").read_bytes()
    assert schema.is_file(), f"{schema.relative_to(REPO)} is missing: run scripts/sync-chart-schemas.sh"
    assert schema.read_bytes() == expected, (
        f"{schema.relative_to(REPO)} must be a copy of charts/library/values.schema.json: "
        "run scripts/sync-chart-schemas.sh"
    )


def test_discovery_finds_charts_and_gitops_but_not_libraries(tmp_path: Path) -> None:
    for rel, kind in [
        ("charts/library", "library"),
        ("charts/pxe", "application"),
        ("charts/pxe/charts/library", "library"),
        ("gitops/apps/gitea", "application"),
        ("gitops/apps/gitea/charts/upstream", "application"),
    ]:
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "Chart.yaml").write_text(f"apiVersion: v2\nname: x\nversion: 0.1.0\ntype: {kind}\n")
    found = [c.relative_to(tmp_path).as_posix() for c in discover_charts(tmp_path)]
    assert found == ["charts/pxe", "gitops/apps/gitea"]


def _problems(fixture: str) -> list[str]:
    docs = render_chart(CAN_FAIL, [CAN_FAIL / "broken" / fixture])
    return validate_documents(docs) + check_pod_security(docs)


def _reported(problems: list[str], fixture: str, doc: str, text: str) -> bool:
    prefix = f"chart can-fail, fixture {fixture}, {doc}: "
    return any(p.startswith(prefix) and text in p for p in problems)


def test_can_fail_chart_is_valid_without_broken_values() -> None:
    docs = render_chart(CAN_FAIL)
    assert validate_documents(docs) + check_pod_security(docs) == []


def test_misspelled_fields_are_reported_with_document_and_path() -> None:
    fixture = "misspelled-field-values.yaml"
    problems = _problems(fixture)
    assert _reported(problems, fixture, "Deployment/can-fail-typo", "spec.replicass: unknown field"), problems
    assert _reported(
        problems,
        fixture,
        "Deployment/can-fail-typo",
        "spec.template.spec.containers[0].imagePullPolicyy: unknown field",
    ), problems


def test_wrong_type_is_reported_with_document_and_path() -> None:
    fixture = "wrong-type-values.yaml"
    problems = _problems(fixture)
    assert _reported(problems, fixture, "Deployment/can-fail", "spec.replicas: 'two' is not of type"), problems


def test_servicemonitor_with_endpoints_map_is_reported() -> None:
    fixture = "invalid-servicemonitor-values.yaml"
    problems = _problems(fixture)
    assert _reported(problems, fixture, "ServiceMonitor/can-fail-monitor", "spec.endpoints: {} is not of type 'array'")


def test_prometheusrule_without_expr_is_reported() -> None:
    fixture = "invalid-prometheusrule-values.yaml"
    problems = _problems(fixture)
    assert _reported(
        problems, fixture, "PrometheusRule/can-fail-rules", "spec.groups[0].rules[0]: 'expr' is a required property"
    ), problems


def test_unknown_kind_is_reported() -> None:
    fixture = "unknown-kind-values.yaml"
    problems = _problems(fixture)
    assert _reported(problems, fixture, "Widget/can-fail-widget", "unknown kind Widget (widgets.example.test/v1)")


def test_insecure_pod_breaks_every_security_rule() -> None:
    fixture = "insecure-values.yaml"
    problems = _problems(fixture)
    base = "spec.template.spec"
    container = f"{base}.containers[main]"
    for expected in [
        f"{base}.securityContext.runAsNonRoot: must be true",
        f"{base}.securityContext.seccompProfile.type: must be RuntimeDefault",
        f"{container}.securityContext.readOnlyRootFilesystem: must be true",
        f"{container}.securityContext.allowPrivilegeEscalation: must be false",
        f"{container}.securityContext.capabilities.drop: must contain ALL",
        f"{container}.livenessProbe: required on a long-running container",
        f"{container}.readinessProbe: required on a long-running container",
    ]:
        assert _reported(problems, fixture, "Deployment/can-fail", expected), (expected, problems)


def test_values_schema_rejects_a_typo_at_top_level(tmp_path: Path) -> None:
    values = tmp_path / "typo-values.yaml"
    values.write_text("controlers: {}\n")
    with pytest.raises(ChartError, match="controlers"):
        render_chart(EVERYTHING, [values])


@pytest.mark.parametrize(
    ("values", "typo"),
    [
        ("controllers: {main: {replica: 2}}", "replica"),
        ("controllers: {main: {containers: {main: {imagee: {repository: x}}}}}", "imagee"),
        ("service: {main: {prots: {}}}", "prots"),
        ("ingress: {main: {hots: example.test}}", "hots"),
    ],
    ids=["controller", "container", "service", "ingress"],
)
def test_values_schema_rejects_a_typo_in_item_maps(tmp_path: Path, values: str, typo: str) -> None:
    path = tmp_path / "typo-values.yaml"
    path.write_text(values + "\n")
    with pytest.raises(ChartError, match=typo):
        lint_chart(EVERYTHING, [path])


def test_library_chart_lints_strictly() -> None:
    lint_chart(LIBRARY)


def test_validation_uses_the_kubernetes_minor_the_site_runs() -> None:
    """What is deployed, not the newest schemas: the minor of the site file's default k3s version."""
    shipped = {Version(v) for v in kubernetes_validate.utils.all_versions()}
    assert Version(KUBERNETES_VERSION) in shipped, f"kubernetes-validate ships no {KUBERNETES_VERSION} schemas"
    minor = K3s().version.removeprefix("v").split(".")[:2]
    assert Version(KUBERNETES_VERSION).release[:2] == tuple(int(p) for p in minor)
