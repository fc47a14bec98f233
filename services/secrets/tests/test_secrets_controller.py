"""The controller against the emulated Kubernetes API (through the real client): fill, refuse, regenerate, rotate
with grace, restart consumers, leader election, and a rerun that writes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes.client
from prometheus_client import REGISTRY
from secrets_helpers import (
    MITTWALD,
    OURS,
    Clock,
    annotations,
    create_secret,
    events,
    running,
    settle,
    stored,
    values,
)

from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_secrets import spec as ann
from homelab_secrets.controller import restart_stamp


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_type_is_generated(kube: KubeEmulator, tmp_path: Path) -> None:
    create_secret(kube, "string", {MITTWALD + "autogenerate": "password,token", MITTWALD + "length": "16B"})
    create_secret(kube, "ssh", {MITTWALD + "type": "ssh-keypair", OURS + "key-algorithm": "ed25519"})
    create_secret(kube, "basic", {MITTWALD + "type": "basic-auth", MITTWALD + "basic-auth-username": "ci"})
    create_secret(kube, "classes", {OURS + "generate": "pin", OURS + "charset": "digits", OURS + "length": "8"})
    with running(kube):
        wait_for(
            lambda: all(annotations(kube, n).get(ann.STATUS) == "ok" for n in ("string", "ssh", "basic", "classes"))
        )
    assert len(values(kube, "string")["password"]) == 24  # 16 bytes, base64
    assert values(kube, "classes")["pin"].isdigit()
    (tmp_path / "k.pub").write_bytes(values(kube, "ssh")["ssh-publickey"])
    assert (
        "(ED25519)"
        in subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True).stdout
    )
    basic = values(kube, "basic")
    (tmp_path / "htpasswd").write_bytes(basic["auth"] + b"\n")
    assert (
        subprocess.run(["htpasswd", "-vb", str(tmp_path / "htpasswd"), "ci", basic["password"].decode()]).returncode
        == 0
    )
    notes = annotations(kube, "string")
    assert notes[MITTWALD + "secure"] == "yes"
    assert MITTWALD + "autogenerate-generated-at" in notes
    assert annotations(kube, "ssh")[ann.GENERATED_AT]


def test_a_user_value_is_kept_and_a_rerun_writes_nothing(kube: KubeEmulator) -> None:
    create_secret(kube, "mixed", {MITTWALD + "autogenerate": "password"}, data={"username": b"someuser"})
    with running(kube) as controller:
        wait_for(lambda: "password" in values(kube, "mixed"))
        assert values(kube, "mixed")["username"] == b"someuser"
        version = stored(kube, "mixed")["metadata"]["resourceVersion"]
        patches = kube.request_count("update", "secrets")
        for _ in range(3):
            settle(controller)
        assert stored(kube, "mixed")["metadata"]["resourceVersion"] == version
        assert kube.request_count("update", "secrets") == patches
        assert {p.get("fieldManager") for p in kube.request_params("update", "secrets")} == {"homelab-secrets"}


def test_a_foreign_secret_is_refused_with_an_event_and_not_written(kube: KubeEmulator) -> None:
    before = metric("homelab_secrets_refusals_total")
    create_secret(kube, "theirs", {MITTWALD + "autogenerate": "password"}, data={"password": b"hunter2"})
    create_secret(
        kube, "handed-over", {MITTWALD + "autogenerate": "password,token", OURS + "managed": "true"},
        data={"password": b"hunter2"},
    )  # fmt: skip
    with running(kube) as controller:
        wait_for(lambda: events(kube, "Refused"))
        wait_for(lambda: "token" in values(kube, "handed-over"))
        settle(controller)
    refused = events(kube, "Refused")
    assert len(refused) == 1
    assert refused[0]["type"] == "Warning"
    assert "Secret apps/theirs already holds password" in refused[0]["note"]
    assert stored(kube, "theirs")["metadata"]["resourceVersion"] == "1"  # never written
    assert values(kube, "handed-over")["password"] == b"hunter2"
    assert metric("homelab_secrets_refusals_total") == before + 1
    assert metric("homelab_secrets_refused") == 1


def test_an_unknown_value_is_an_event_a_metric_and_a_status(kube: KubeEmulator) -> None:
    before = metric("homelab_secrets_errors_total", kind="invalid")
    create_secret(kube, "typo", {MITTWALD + "autogenerate": "password", MITTWALD + "encoding": "base65"})
    with running(kube):
        wait_for(lambda: annotations(kube, "typo").get(ann.STATUS, "").startswith("error:"))
        wait_for(lambda: events(kube, "InvalidAnnotation"))
    assert "encoding: unknown encoding 'base65'" in events(kube, "InvalidAnnotation")[0]["note"]
    assert "data" not in stored(kube, "typo")  # no silent fallback to base64
    assert metric("homelab_secrets_errors_total", kind="invalid") == before + 1


def test_regenerate_true_regenerates_every_key_once(kube: KubeEmulator) -> None:
    create_secret(kube, "again", {MITTWALD + "autogenerate": "a,b"})
    with running(kube):
        wait_for(lambda: "b" in values(kube, "again"))
        first = values(kube, "again")
        api = kubernetes.client.CoreV1Api(kube.api_client())
        api.patch_namespaced_secret("again", "apps", {"metadata": {"annotations": {MITTWALD + "regenerate": "true"}}})
        wait_for(lambda: MITTWALD + "regenerate" not in annotations(kube, "again"))
        second = values(kube, "again")
    assert second["a"] != first["a"]
    assert second["b"] != first["b"]
    assert second["a.previous"] == first["a"]


def test_rotation_with_grace_and_cleanup(kube: KubeEmulator) -> None:
    clock = Clock()
    notes = {OURS + "generate": "password", OURS + "rotate-every": "720h", OURS + "grace": "1h"}
    create_secret(kube, "rotating", notes)
    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "rotating"))
        first = values(kube, "rotating")["password"]
        next_rotation = clock.now + 720 * 3600
        wait_for(lambda: metric(
            "homelab_secrets_next_rotation_timestamp_seconds", namespace="apps", secret="rotating"
        ) == next_rotation)  # fmt: skip
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: "password.previous" in values(kube, "rotating"))
        rotated = values(kube, "rotating")
        assert rotated["password.previous"] == first
        assert rotated["password"] != first
        assert annotations(kube, "rotating")[ann.ROTATED_AT]
        clock.advance(3600)
        settle(controller)
        wait_for(lambda: "password.previous" not in values(kube, "rotating"))
        assert ann.PREVIOUS_UNTIL not in annotations(kube, "rotating")
    assert values(kube, "rotating")["password"] == rotated["password"]
    assert events(kube, "Rotated")


def test_rotation_restarts_workloads_that_reload_on_the_secret_once(kube: KubeEmulator) -> None:
    clock = Clock()
    create_secret(kube, "db", {OURS + "generate": "password", OURS + "rotate-every": "1h"})
    apps = kubernetes.client.AppsV1Api(kube.api_client())
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    for name, notes in (("web", {OURS + "reload": "db"}), ("worker", {"secret.reloader.stakater.com/reload": "db"})):
        apps.create_namespaced_deployment("apps", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "annotations": notes},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template},
        })  # fmt: skip

    def stamp(name: str) -> str:
        found = kube.objects("apps/v1/deployments", "apps")[f"apps/{name}"]
        notes = found["spec"]["template"].get("metadata", {}).get("annotations") or {}
        return str(notes.get(ann.RESTARTED_FOR, ""))

    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "db"))
        settle(controller)
        assert stamp("web") == stamp("worker") == ""  # the first fill restarts nothing
        clock.advance(3600)
        settle(controller)
        wait_for(lambda: stamp("web") != "" and stamp("worker") != "")
        expected = restart_stamp({"db": annotations(kube, "db")[ann.ROTATED_AT]})
        assert stamp("web") == stamp("worker") == expected
        patches = kube.request_count("update", "deployments")
        for _ in range(3):
            settle(controller)  # no restart loop: the stamp depends only on rotated-at
        assert kube.request_count("update", "deployments") == patches
        # written under our own field manager: with ServerSideApply, Argo CD never owned this field
        assert {p.get("fieldManager") for p in kube.request_params("update", "deployments")} == {"homelab-secrets"}
    assert {e["regarding"]["name"] for e in events(kube, "SecretRotated")} == {"web", "worker"}


def test_workloads_that_name_the_secret_on_their_pod_template_restart_together(kube: KubeEmulator) -> None:
    """Woodpecker's way: server and agent (StatefulSets whose chart annotates only pods) share one secret."""
    clock = Clock()
    create_secret(kube, "agent-secret", {OURS + "generate": "AGENT_SECRET", OURS + "rotate-every": "1h"})
    apps = kubernetes.client.AppsV1Api(kube.api_client())
    for name in ("server", "agent"):
        template = {
            "metadata": {"labels": {"app": name}, "annotations": {OURS + "reload": "agent-secret"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
        apps.create_namespaced_stateful_set("apps", {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "serviceName": name, "template": template},
        })  # fmt: skip

    def stamp(name: str) -> str:
        found = kube.objects("apps/v1/statefulsets", "apps")[f"apps/{name}"]
        return str(found["spec"]["template"]["metadata"]["annotations"].get(ann.RESTARTED_FOR, ""))

    with running(kube, clock) as controller:
        wait_for(lambda: "AGENT_SECRET" in values(kube, "agent-secret"))
        settle(controller)
        assert stamp("server") == stamp("agent") == ""
        clock.advance(3600)
        settle(controller)
        wait_for(lambda: stamp("server") != "" and stamp("agent") != "")
        assert (
            stamp("server")
            == stamp("agent")
            == restart_stamp({"agent-secret": annotations(kube, "agent-secret")[ann.ROTATED_AT]})
        )
        patches = kube.request_count("update", "statefulsets")
        settle(controller)
        settle(controller)
        assert kube.request_count("update", "statefulsets") == patches  # no restart loop
    # the merge patch kept the reload list the chart put there
    template = kube.objects("apps/v1/statefulsets", "apps")["apps/agent"]["spec"]["template"]["metadata"]
    assert template["annotations"][OURS + "reload"] == "agent-secret"


def test_only_the_leader_writes_and_the_other_takes_over(kube: KubeEmulator) -> None:
    create_secret(kube, "one", {OURS + "generate": "a"})
    with running(kube, identity="secrets-0") as first:
        wait_for(lambda: "a" in values(kube, "one"))
        with running_follower(kube) as second:
            assert not second.is_leader()
            create_secret(kube, "two", {OURS + "generate": "a"})
            wait_for(lambda: "a" in values(kube, "two"))
            assert second.passes == 0
            first.stop()  # releases the Lease: the follower takes over and writes
            wait_for(second.is_leader, timeout=30)
            create_secret(kube, "three", {OURS + "generate": "a"})
            wait_for(lambda: "a" in values(kube, "three"))
            assert second.passes > 0


def running_follower(kube: KubeEmulator):  # type: ignore[no-untyped-def]
    from contextlib import contextmanager

    from secrets_helpers import FAST, settings

    from homelab_secrets.app import build_controller

    @contextmanager
    def follower():  # type: ignore[no-untyped-def]
        controller = build_controller(settings(identity="secrets-1"), api_client=kube.api_client(), backoff=FAST)
        controller.start()
        try:
            wait_for(lambda: controller.ready() is None)
            yield controller
        finally:
            controller.stop()

    return follower()


def test_default_passwords_are_found_and_never_shown(kube: KubeEmulator) -> None:
    create_secret(kube, "grafana", {}, data={"admin-user": b"admin", "admin-password": b"prom-operator"})
    create_secret(kube, "fine", {}, data={"admin-user": b"admin", "admin-password": b"Xk2-long-random"})
    with running(kube) as controller:
        wait_for(lambda: events(kube, "DefaultPassword"))
        settle(controller)
        assert controller.defaults_found == [("apps/grafana", "admin-password", "grafana")]
    note = events(kube, "DefaultPassword")[0]["note"]
    assert "admin-password" in note
    assert "prom-operator" not in note
    assert metric("homelab_secrets_default_passwords") == 1
