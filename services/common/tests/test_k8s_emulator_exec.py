"""The emulator serves pods/exec over the channel.k8s.io websocket protocol, to the real ``kubernetes.stream``
client; a local subprocess plays the container."""

from __future__ import annotations

from typing import Any

import kubernetes.client
import pytest
from kubernetes.stream import stream

from homelab_common.k8s.testing import KubeEmulator, kube

__all__ = ["kube"]


def running_pod(api: kubernetes.client.CoreV1Api, name: str = "app-0") -> None:
    body = {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "app"}]}}
    api.create_namespaced_pod("apps", body | {"status": {"phase": "Running"}})


def execute(api: kubernetes.client.CoreV1Api, command: list[str], **options: object) -> object:
    return stream(
        api.connect_get_namespaced_pod_exec,
        "app-0",
        "apps",
        command=command,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
        binary=True,
        **options,
    )


def finish(ws: Any) -> None:
    """WSClient.close() leaves the socket open when the server closed first (websocket-client skips it)."""
    ws.close()
    ws.sock.shutdown()


def test_exec_streams_stdout_and_stderr_and_reports_the_exit_code(kube: KubeEmulator) -> None:
    with kube.api_client() as client:
        api = kubernetes.client.CoreV1Api(client)
        running_pod(api)
        ws = execute(api, ["sh", "-c", "yes x | head -c 200000; echo oops >&2; exit 7"], stdin=False)
        ws.run_forever(timeout=60)  # type: ignore[attr-defined]
        assert ws.subprotocol == "v5.channel.k8s.io"  # type: ignore[attr-defined]
        assert ws.read_stdout() == b"x\n" * 100000  # type: ignore[attr-defined]
        assert ws.read_stderr() == b"oops\n"  # type: ignore[attr-defined]
        assert ws.returncode == 7  # type: ignore[attr-defined]
        finish(ws)
        ok = execute(api, ["true"], stdin=False)
        ok.run_forever(timeout=60)  # type: ignore[attr-defined]
        assert ok.returncode == 0  # type: ignore[attr-defined]
        finish(ok)


def test_exec_feeds_stdin_until_the_client_closes_it(kube: KubeEmulator) -> None:
    with kube.api_client() as client:
        api = kubernetes.client.CoreV1Api(client)
        running_pod(api)
        ws = execute(api, ["wc", "-c"], stdin=True)
        ws.write_stdin(b"12345")  # type: ignore[attr-defined]
        ws.close_channel(0)  # type: ignore[attr-defined]  (v5: stdin ends, wc prints and exits)
        ws.run_forever(timeout=60)  # type: ignore[attr-defined]
        assert ws.read_stdout().strip() == b"5"  # type: ignore[attr-defined]
        assert ws.returncode == 0  # type: ignore[attr-defined]
        finish(ws)


def test_exec_refuses_a_missing_pod_or_container_like_the_api_server(kube: KubeEmulator) -> None:
    with kube.api_client() as client:
        api = kubernetes.client.CoreV1Api(client)
        with pytest.raises(kubernetes.client.ApiException, match='pods \\\\"app-0\\\\" not found'):
            execute(api, ["true"], stdin=False)
        running_pod(api)
        with pytest.raises(kubernetes.client.ApiException, match="container db is not valid for pod app-0"):
            execute(api, ["true"], stdin=False, container="db")
        missing = execute(api, ["/nonexistent/dump"], stdin=False)
        missing.run_forever(timeout=60)  # type: ignore[attr-defined]
        assert "exec failed" in missing.read_channel(3).decode()  # type: ignore[attr-defined]
        finish(missing)
