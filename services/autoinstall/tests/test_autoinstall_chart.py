"""charts/autoinstall: the rendered pod is a working autoinstall - its settings load, its site file is valid, and
the state sits on a persistent volume at the state directory it is told to use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chart_harness import find, render_chart
from homelab_autoinstall.settings import Settings
from homelab_common.settings import load_settings
from homelab_common.site import parse_site

CHART = Path(__file__).resolve().parents[3] / "charts" / "autoinstall"


def test_chart_runs_one_replica_with_persistent_state_and_the_site_from_a_configmap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = render_chart(CHART, [CHART / "ci" / "lan-values.yaml"], release="autoinstall")
    statefulset = find(docs, "StatefulSet", "autoinstall")[0].body
    assert statefulset["spec"]["replicas"] == 1
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    from_pod = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert from_pod == {
        "HOMELAB_AUTOINSTALL_EVENTS_NAMESPACE": "metadata.namespace",
        "HOMELAB_AUTOINSTALL_POD_NAME": "metadata.name",
    }
    role = find(docs, "Role")[0].body
    assert {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]} in role["rules"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["HOMELAB_AUTOINSTALL_STATE_DIR"]] in claims
    site_dir = str(Path(env["HOMELAB_AUTOINSTALL_SITE_FILE"]).parent)
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    configmap_name = volumes[mounts[site_dir]]["configMap"]["name"]
    site_text = find(docs, "ConfigMap", configmap_name)[0].body["data"]["site.yaml"]
    site = parse_site(yaml.safe_load(site_text))
    assert [m.name for m in site.machines] == ["node1", "node2"]
    monkeypatch.setenv("HOMELAB_SECRETS_DIR", str(tmp_path / "none"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings)
    assert settings.public_url == "http://10.77.0.3:8081"
    assert [str(n) for n in settings.trusted_networks] == ["10.42.0.0/16"]
    assert container["ports"][0]["containerPort"] == 8081
    assert env["HOMELAB_HTTP_BIND"].endswith(":8081")
    service = find(docs, "Service", "autoinstall")[0].body
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 8081
