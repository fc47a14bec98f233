"""The validators on hand-written documents: what strict means for CRDs, kinds and metadata."""

from chart_harness import (
    ROOT_REASON_ANNOTATION,
    Document,
    check_pod_security,
    strict_openapi,
    validate_documents,
)

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.test"},
    "spec": {
        "group": "example.test",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer"},
                                    "note": {"type": "string", "nullable": True},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _widget(spec: dict) -> Document:
    return Document({"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})


def test_crd_objects_are_closed_unless_they_preserve_unknown_fields() -> None:
    schema = strict_openapi(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    spec = schema["properties"]["spec"]
    assert spec["additionalProperties"] is False
    assert "additionalProperties" not in spec["properties"]["free"]
    assert spec["properties"]["note"]["type"] == ["string", "null"]


def test_custom_resources_of_a_rendered_crd_are_validated_against_it() -> None:
    crd = Document(CRD, "c", "f")
    good = _widget({"size": 1, "note": None, "free": {"anything": [1]}})
    bad = _widget({"size": "one", "colour": "red"})
    assert validate_documents([crd, good]) == []
    assert validate_documents([crd, bad]) == [
        "chart ?, fixture ?, Widget/w: spec.colour: unknown field",
        "chart ?, fixture ?, Widget/w: spec.size: 'one' is not of type 'integer'",
    ]


def test_without_its_crd_a_custom_resource_is_an_unknown_kind() -> None:
    [problem] = validate_documents([_widget({"size": 1})])
    assert "unknown kind Widget (example.test/v1)" in problem


def test_custom_resource_metadata_is_checked_strictly() -> None:
    doc = Document(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "r", "lables": {}},
            "spec": {"groups": []},
        }
    )
    assert validate_documents([doc]) == ["chart ?, fixture ?, PrometheusRule/r: metadata.lables: unknown field"]


def test_a_builtin_kind_under_a_foreign_group_is_unknown() -> None:
    doc = Document({"apiVersion": "networking.example.test/v1", "kind": "Ingress", "metadata": {"name": "i"}})
    [problem] = validate_documents([doc])
    assert "unknown kind Ingress" in problem


def _root_deployment(annotations: dict[str, str], added: list[str]) -> Document:
    container = {
        "name": "main",
        "image": "x",
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": added},
        },
    }
    pod = {
        "securityContext": {"runAsNonRoot": False, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pxe"},
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": pod}},
    }
    return Document(body, chart="pxe", fixture="t")


def test_root_pod_needs_its_reason_annotation() -> None:
    problems = check_pod_security([_root_deployment({}, ["NET_BIND_SERVICE"])])
    assert any("spec.template.spec.securityContext.runAsNonRoot: must be true" in p for p in problems)


def test_root_pod_with_a_reason_may_add_only_net_bind_service() -> None:
    reason = {ROOT_REASON_ANNOTATION: "binds UDP 67"}
    assert check_pod_security([_root_deployment(reason, ["NET_BIND_SERVICE"])]) == []
    problems = check_pod_security([_root_deployment(reason, ["NET_BIND_SERVICE", "NET_ADMIN"])])
    assert len(problems) == 1
    assert "may add only ['NET_BIND_SERVICE'], not ['NET_ADMIN']" in problems[0]
