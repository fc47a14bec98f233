"""load_client picks in-cluster credentials or a kubeconfig, and says what to do when it has neither."""

from __future__ import annotations

from pathlib import Path

import kubernetes.client
import pytest
import yaml

from homelab_common.k8s import KubeConfigError, load_client
from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "homelab", "cluster": {"server": server}}],
        "users": [{"name": "admin", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "homelab", "context": {"cluster": "homelab", "user": "admin"}}],
        "current-context": "homelab",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_explicit_kubeconfig_reaches_its_server(kube: KubeEmulator, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", kube.url)
    client = load_client(str(path))
    assert client.configuration.host == kube.url
    assert kubernetes.client.CoreV1Api(client).list_namespaced_pod("default").items == []


def test_kubeconfig_env_var_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", "https://10.0.0.1:6443")
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert load_client().configuration.host == "https://10.0.0.1:6443"


def test_default_kubeconfig_location_is_used(tmp_path: Path) -> None:
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    write_kubeconfig(tmp_path / "home" / ".kube" / "config", "https://10.0.0.2:6443")
    assert load_client().configuration.host == "https://10.0.0.2:6443"


def test_no_credentials_at_all_says_what_to_do() -> None:
    with pytest.raises(KubeConfigError, match="set KUBECONFIG") as caught:
        load_client()
    assert "KUBERNETES_SERVICE_HOST is unset" in str(caught.value)


def test_in_a_pod_without_a_token_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("this machine has a real service-account token")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeConfigError, match="automountServiceAccountToken"):
        load_client()


def test_explicit_kubeconfig_wins_inside_a_pod(
    monkeypatch: pytest.MonkeyPatch, kube: KubeEmulator, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    path = write_kubeconfig(tmp_path / "config", kube.url)
    assert load_client(str(path)).configuration.host == kube.url
