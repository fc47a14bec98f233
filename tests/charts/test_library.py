"""What the library renders, one aspect per test, asserted on the documents of the fixture consumers."""

from pathlib import Path

import pytest

from chart_harness import ChartError, Document, find, pod_templates, render_chart

FIXTURES = Path(__file__).parent / "fixtures"
EVERYTHING = FIXTURES / "everything"
CAN_FAIL = FIXTURES / "can-fail"
WORKLOADS = ["Deployment", "DaemonSet", "StatefulSet", "CronJob", "Job"]


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return render_chart(EVERYTHING)


@pytest.fixture(scope="module")
def minimal() -> list[Document]:
    return render_chart(EVERYTHING, [EVERYTHING / "ci" / "minimal-values.yaml"])


def _one(docs: list[Document], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name or '*'}, got {[d.ident for d in found]}"
    return found[0].body


def _pod(docs: list[Document], kind: str, name: str) -> dict:
    doc = find(docs, kind, name)[0]
    return next(pod_templates(doc))[1]


def _render_can_fail(tmp_path: Path, values: str) -> list[Document]:
    path = tmp_path / "case-values.yaml"
    path.write_text(values)
    return render_chart(CAN_FAIL, [path])


# ----------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    "kind",
    [
        *WORKLOADS,
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    ],
)
def test_every_kind_is_rendered_when_configured(docs: list[Document], kind: str) -> None:
    assert find(docs, kind), f"no {kind} rendered"


@pytest.mark.parametrize("kind", ["DaemonSet", "StatefulSet", "CronJob", "Job", "Ingress"])
def test_disabled_items_are_not_rendered(minimal: list[Document], kind: str) -> None:
    assert not find(minimal, kind)


def test_a_bare_deployment_renders_only_the_deployment() -> None:
    kinds = sorted(d.kind for d in render_chart(CAN_FAIL))
    assert kinds == ["Deployment"]


def test_main_items_take_the_release_name_and_others_a_suffix(docs: list[Document]) -> None:
    assert _one(docs, "Deployment")["metadata"]["name"] == "everything"
    assert _one(docs, "DaemonSet")["metadata"]["name"] == "everything-agent"
    assert {d.name for d in find(docs, "Service")} == {"everything", "everything-store"}


# -------------------------------------------------------------------------------------- security


@pytest.mark.parametrize("kind", WORKLOADS)
def test_pods_run_as_non_root_with_seccomp_by_default(docs: list[Document], kind: str) -> None:
    pod = _pod(docs, kind, find(docs, kind)[0].name)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("kind", WORKLOADS)
def test_containers_are_locked_down_by_default(docs: list[Document], kind: str) -> None:
    pod = _pod(docs, kind, find(docs, kind)[0].name)
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]


def test_a_capability_can_be_added_while_all_others_stay_dropped(docs: list[Document]) -> None:
    container = _pod(docs, "DaemonSet", "everything-agent")["containers"][0]
    assert container["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}


def test_service_account_token_is_mounted_only_when_asked(docs: list[Document]) -> None:
    assert _pod(docs, "Deployment", "everything")["automountServiceAccountToken"] is True
    assert _pod(docs, "DaemonSet", "everything-agent")["automountServiceAccountToken"] is False
    assert _one(docs, "ServiceAccount")["automountServiceAccountToken"] is False


def test_host_network_uses_cluster_dns(docs: list[Document]) -> None:
    pod = _pod(docs, "DaemonSet", "everything-agent")
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "hostNetwork" not in _pod(docs, "Deployment", "everything")


@pytest.mark.parametrize("kind", WORKLOADS)
def test_tmp_is_a_writable_empty_dir_by_default(docs: list[Document], kind: str) -> None:
    pod = _pod(docs, kind, find(docs, kind)[0].name)
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    for container in pod["containers"]:
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


# ---------------------------------------------------------------------------------------- probes


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet", "StatefulSet"])
def test_long_running_containers_probe_healthz_and_readyz(docs: list[Document], kind: str) -> None:
    container = _pod(docs, kind, find(docs, kind)[0].name)["containers"][0]
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}}
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"}}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize("kind", ["CronJob", "Job"])
def test_run_to_completion_containers_have_no_probes(docs: list[Document], kind: str) -> None:
    pod = _pod(docs, kind, find(docs, kind)[0].name)
    assert pod["restartPolicy"] == "OnFailure"
    for container in pod["containers"]:
        assert "livenessProbe" not in container
        assert "readinessProbe" not in container


def test_init_containers_have_no_probes_and_not_the_default_http_port(docs: list[Document]) -> None:
    pod = _pod(docs, "Deployment", "everything")
    init = pod["initContainers"][0]
    assert init["name"] == "migrate"
    assert "livenessProbe" not in init
    assert "ports" not in init, "the main container's http port again: a duplicate port definition"
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in pod["containers"][0]["ports"]


def test_an_init_container_keeps_the_ports_it_names_itself(tmp_path: Path) -> None:
    docs = _render_can_fail(
        tmp_path,
        "controllers: {main: {initContainers: {seed: {image: {repository: r}, ports: {admin: {port: 9000}}}}}}\n",
    )
    (init,) = _pod(docs, "Deployment", "can-fail")["initContainers"]
    assert init["ports"] == [{"name": "admin", "containerPort": 9000, "protocol": "TCP"}]


def test_probes_can_be_tuned_or_replaced(tmp_path: Path) -> None:
    docs = _render_can_fail(
        tmp_path,
        "controllers: {main: {containers: {main: {probes: {"
        "liveness: {periodSeconds: 20}, readiness: {custom: {tcpSocket: {port: 53}}}}}}}}\n",
    )
    container = _pod(docs, "Deployment", "can-fail")["containers"][0]
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20}
    assert container["readinessProbe"] == {"tcpSocket": {"port": 53}}


# -------------------------------------------------------------------------------- labels, images


@pytest.mark.parametrize("kind", ["Deployment", "Service", "ConfigMap", "Ingress", "ServiceMonitor", "Role"])
def test_objects_carry_the_standard_labels(docs: list[Document], kind: str) -> None:
    labels = find(docs, kind)[0].body["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "everything"
    assert labels["app.kubernetes.io/instance"] == "everything"
    assert labels["app.kubernetes.io/version"] == "1.0.0"
    assert labels["app.kubernetes.io/part-of"] == "homelab"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["app.kubernetes.io/component"]


def test_selectors_match_the_pod_labels_of_their_controller(docs: list[Document]) -> None:
    pod_labels = _one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    selector = _one(docs, "Service", "everything-store")["spec"]["selector"]
    assert selector.items() <= pod_labels.items()
    assert selector["app.kubernetes.io/component"] == "store"


def test_image_tag_defaults_to_app_version(docs: list[Document]) -> None:
    images = {c["name"]: c["image"] for c in _pod(docs, "Deployment", "everything")["containers"]}
    assert images == {"main": "registry.example.test/homelab/everything:1.0.0"}
    agent = _pod(docs, "DaemonSet", "everything-agent")["containers"][0]
    assert agent["image"] == "registry.example.test/homelab/agent:2.0.0"


def test_env_comes_from_values_sorted_and_templated(docs: list[Document]) -> None:
    container = _pod(docs, "Deployment", "everything")["containers"][0]
    assert container["env"] == [
        {"name": "HOMELAB_EVERYTHING_LOG_LEVEL", "value": "info"},
        {"name": "HOMELAB_EVERYTHING_NAMESPACE", "value": "homelab"},
        {
            "name": "HOMELAB_EVERYTHING_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "everything-token", "key": "token"}},
        },
    ]
    assert container["envFrom"] == [{"configMapRef": {"name": "everything"}}]


def test_resources_have_requests_and_a_memory_limit(docs: list[Document]) -> None:
    resources = _pod(docs, "Deployment", "everything")["containers"][0]["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


# ---------------------------------------------------------------------------- the other kinds


def test_volumes_are_mounted_only_into_the_listed_controllers(docs: list[Document]) -> None:
    main = {v["name"] for v in _pod(docs, "Deployment", "everything")["volumes"]}
    agent = {v["name"] for v in _pod(docs, "DaemonSet", "everything-agent")["volumes"]}
    assert main == {"tmp", "data", "config"}
    assert agent == {"tmp"}
    assert _one(docs, "PersistentVolumeClaim")["metadata"]["name"] == "everything-data"


def test_statefulset_claims_its_own_volumes(docs: list[Document]) -> None:
    sts = _one(docs, "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/store"} in mounts


def test_rbac_binds_the_role_to_the_service_account(docs: list[Document]) -> None:
    binding = _one(docs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "everything"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "everything", "namespace": "homelab"}]
    assert _one(docs, "ClusterRoleBinding")["roleRef"]["kind"] == "ClusterRole"


def test_ingress_routes_its_host_to_the_main_service(docs: list[Document]) -> None:
    spec = _one(docs, "Ingress")["spec"]
    assert spec["ingressClassName"] == "traefik"
    assert spec["tls"] == [{"hosts": ["everything.example.test"], "secretName": "everything-tls"}]
    path = spec["rules"][0]["http"]["paths"][0]
    assert path["backend"] == {"service": {"name": "everything", "port": {"name": "http"}}}


def test_network_policy_selects_its_controller_and_lists_rules(docs: list[Document]) -> None:
    spec = _one(docs, "NetworkPolicy")["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "main"
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert len(spec["ingress"]) == 1
    assert spec["egress"] == [{"ports": [{"port": 53, "protocol": "UDP"}]}]


def test_service_monitor_scrapes_metrics_of_the_service(docs: list[Document]) -> None:
    spec = _one(docs, "ServiceMonitor")["spec"]
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/service"] == "main"
    # every series carries its pod's node (what a NodeDown inhibition matches on: observability/)
    node = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
    assert spec["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "relabelings": [node]}]
    assert _one(docs, "Service", "everything")["metadata"]["labels"]["app.kubernetes.io/service"] == "main"


def test_prometheus_rule_renders_alerts_and_recordings(docs: list[Document]) -> None:
    rules = _one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {"alert": "EverythingDown"}.items() <= rules[0].items()
    assert rules[0]["for"] == "5m"
    assert rules[1]["record"] == "everything:requests:rate5m"


def test_cronjob_forbids_concurrent_runs(docs: list[Document]) -> None:
    spec = _one(docs, "CronJob")["spec"]
    assert spec["schedule"] == "0 3 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"


# ---------------------------------------------------------------------------- fail messages


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("controllers: {main: {type: Deploymnet}}", 'controllers.main: unknown type "Deploymnet"'),
        (
            "controllers: {main: {containers: {main: {image: {repository: ''}}}}}",
            "controllers.main.containers.main: image.repository is required",
        ),
        (
            "controllers: {main: {containers: {main: {ports: {http: {port: null}}}}}}",
            "controllers.main.containers.main.ports.http: port (a number) is required",
        ),
        ("service: {main: {ports: {http: {protocol: TCP}}}}", "service.main.ports.http: port (a number) is required"),
        (
            "service: {web: {controller: web, ports: {http: {port: 80}}}}",
            'service.web: controller "web" is not defined in controllers',
        ),
        (
            "service: {main: {ports: {http: {port: 80}}}}\ningress: {main: {className: traefik}}",
            "ingress.main: host is required",
        ),
        (
            "controllers: {job: {type: cronjob, containers: {main: {image: {repository: x}}}}}",
            "controllers.job: cronjob.schedule is required",
        ),
        ("persistence: {data: {type: nfs}}", 'persistence.data: unknown type "nfs"'),
        ("rbac: {main: {type: Rolle, rules: {r: {verbs: [get]}}}}", 'rbac.main: unknown type "Rolle"'),
        ("controllers: {main: {serviceAccount: robot}}", 'controllers.main: serviceAccount "robot" is not defined'),
        (
            "prometheusRule: {main: {groups: {g: {rules: {Down: {for: 5m}}}}}}",
            "prometheusRule.main.groups.g.rules.Down: expr is required",
        ),
        ("serviceMonitor: {main: {service: web}}", 'serviceMonitor.main: service "web" is not defined in service'),
    ],
    ids=[
        "controller-type",
        "image",
        "container-port",
        "service-port",
        "service-controller",
        "ingress-host",
        "cronjob-schedule",
        "persistence-type",
        "rbac-type",
        "service-account",
        "rule-expr",
        "monitor-service",
    ],
)
def test_bad_values_fail_naming_the_item(tmp_path: Path, values: str, message: str) -> None:
    with pytest.raises(ChartError) as failure:
        _render_can_fail(tmp_path, values + "\n")
    assert message in str(failure.value)


def test_names_and_labels_can_be_overridden(tmp_path: Path) -> None:
    docs = _render_can_fail(
        tmp_path,
        "fullnameOverride: boot\nglobal: {partOf: lab, labels: {team: metal}}\n"
        "controllers: {main: {labels: {tier: edge}}}\n",
    )
    deployment = _one(docs, "Deployment")
    assert deployment["metadata"]["name"] == "boot"
    labels = deployment["metadata"]["labels"]
    assert (labels["app.kubernetes.io/part-of"], labels["team"], labels["tier"]) == ("lab", "metal", "edge")


def test_secure_defaults_can_be_relaxed_per_container(tmp_path: Path) -> None:
    docs = _render_can_fail(
        tmp_path, "controllers: {main: {containers: {main: {securityContext: {readOnlyRootFilesystem: false}}}}}\n"
    )
    context = _pod(docs, "Deployment", "can-fail")["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
