"""charts/pxe renders what the service needs: host network, UDP 67/69/4011 + TCP 8080, only NET_BIND_SERVICE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHART = Path(__file__).resolve().parents[3] / "charts" / "pxe"


def deployment(values: list[Path]) -> dict[str, Any]:
    from chart_harness import find, render_chart

    docs = render_chart(CHART, values)
    (doc,) = find(docs, "Deployment", "pxe")
    body: dict[str, Any] = doc.body
    return body


@pytest.mark.parametrize("fixture", [None, "lan-values.yaml"])
def test_pxe_pod_uses_host_network_and_only_net_bind_service(fixture: str | None) -> None:
    pod = deployment([CHART / "ci" / fixture] if fixture else [])["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {(67, "UDP"), (69, "UDP"), (4011, "UDP"), (8080, "TCP")}


def test_lan_fixture_sets_the_serving_lan() -> None:
    spec = deployment([CHART / "ci" / "lan-values.yaml"])["spec"]
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["HOMELAB_PXE_LAN"] == "10.77.0.0/24"
    assert env["HOMELAB_PXE_UNKNOWN_ACTION"] == "local"
    assert spec["strategy"] == {"type": "Recreate"}
