"""Helpers for the secrets tests: Secrets as the API holds them, a controller on the emulator, a settable clock."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes.client

from homelab_common.k8s import Backoff
from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_secrets.app import build_controller
from homelab_secrets.controller import Controller
from homelab_secrets.core import Observed
from homelab_secrets.settings import Settings

FAST = Backoff(initial=0.05, maximum=0.5)
OURS = "secrets.homelab.dev/"
MITTWALD = "secret-generator.v1.mittwald.de/"
START = 1_800_000_000.0  # a fixed "now" for the core tests (2027-01-15)


class Clock:
    """A clock the test moves: rotations and grace windows without sleeping."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def observed(annotations: dict[str, str], data: dict[str, bytes] | None = None, **meta: Any) -> Observed:
    return Observed(
        meta.get("namespace", "apps"),
        meta.get("name", "creds"),
        meta.get("uid", "uid-1"),
        meta.get("resource_version", "1"),
        dict(annotations),
        dict(data or {}),
    )


def secret_manifest(
    name: str, annotations: dict[str, str], data: dict[str, bytes] | None = None, namespace: str = "apps"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "type": "Opaque",
    }
    if data:
        body["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return body


def create_secret(kube: KubeEmulator, name: str, annotations: dict[str, str], **kwargs: Any) -> None:
    namespace = kwargs.get("namespace", "apps")
    api = kubernetes.client.CoreV1Api(kube.api_client())
    api.create_namespaced_secret(namespace, secret_manifest(name, annotations, **kwargs))


def stored(kube: KubeEmulator, name: str, namespace: str = "apps") -> dict[str, Any]:
    return kube.objects("v1/secrets", namespace).get(f"{namespace}/{name}", {})


def values(kube: KubeEmulator, name: str, namespace: str = "apps") -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (stored(kube, name, namespace).get("data") or {}).items()}


def annotations(kube: KubeEmulator, name: str, namespace: str = "apps") -> dict[str, str]:
    result: dict[str, str] = stored(kube, name, namespace).get("metadata", {}).get("annotations") or {}
    return result


def events(kube: KubeEmulator, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.objects("events.k8s.io/v1/events").values() if e.get("reason") == reason]


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "debounce_seconds": 0.05,
        "resync_seconds": 30,
        "backoff_max_seconds": 1,
        "identity": "secrets-0",
        "lease_namespace": "secrets",
        "hook_retry_seconds": 60,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running(kube: KubeEmulator, clock: Callable[[], float] | None = None, **overrides: Any) -> Iterator[Controller]:
    """A started controller on the emulator; it is the leader once this yields."""
    hooks = overrides.pop("hooks", None)
    options: dict[str, Any] = {"clock": clock} if clock else {}
    controller = build_controller(
        settings(**overrides), api_client=kube.api_client(), backoff=FAST, hooks=hooks, **options
    )
    controller.start()
    try:
        wait_for(controller.is_leader)
        wait_for(lambda: controller.passes > 0)
        yield controller
    finally:
        controller.stop()


def settle(controller: Controller) -> None:
    """Run one more pass now and wait until it has finished."""
    before = controller.passes
    controller.reconciler.trigger()
    wait_for(lambda: controller.passes > before)
