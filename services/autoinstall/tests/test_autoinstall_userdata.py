"""Generated seed files: valid against subiquity's schema and cloud-init's, for every role and both arches."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from autoinstall_site import site_data

from chart_harness import Document, validate_documents
from homelab_autoinstall import kubevip
from homelab_autoinstall.secrets import new_nonce
from homelab_autoinstall.userdata import (
    InstallOptions,
    MachineSecrets,
    autoinstall,
    meta_data,
    network_config,
    user_data,
    vendor_data,
)
from homelab_common.site import Machine, Site, parse_site

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "autoinstall-schema.json").read_text())
SEED = "http://10.77.0.2:8081/seed/52-54-00-12-34-56/tok-en_1/"
NONCE = "n0nce-" + "x" * 26


def strict_schema() -> dict[str, Any]:
    """The official schema, plus autoinstall v2's rule that unknown top-level keys are errors (catches typos)."""
    schema = copy.deepcopy(SCHEMA)
    schema["additionalProperties"] = False
    return schema


def secrets() -> MachineSecrets:
    return MachineSecrets(nonce=NONCE)


def machine(site: Site, name: str) -> Machine:
    return next(m for m in site.machines if m.name == name)


def site_with_arch(arch: str) -> Site:
    data = site_data()
    for m in data["machines"]:
        m["arch"] = arch
    return parse_site(data)


def k3s_config_of(doc: dict[str, Any]) -> dict[str, Any]:
    for command in doc["late-commands"]:
        if "/target/etc/rancher/k3s/config.yaml" in command:
            encoded = re.search(r"echo (\S+) \| base64 -d", command)
            assert encoded is not None
            return dict(yaml.safe_load(base64.b64decode(encoded.group(1))))
    raise AssertionError("no k3s config written")


ROLES = [("node1", "first server"), ("node2", "joining server"), ("node3", "agent")]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
@pytest.mark.parametrize(("name", "role"), ROLES)
def test_user_data_validates_against_autoinstall_and_cloud_init_schemas(
    tmp_path: Path, arch: str, name: str, role: str
) -> None:
    site = site_with_arch(arch)
    text = user_data(site, machine(site, name), secrets(), SEED, InstallOptions())
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert set(document) == {"autoinstall"}
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(strict_schema()).validate(document["autoinstall"])
    path = tmp_path / "user-data"
    path.write_text(text)
    result = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
    # the user-data subiquity hands to the installed system's cloud-init is valid cloud-config too
    nested = tmp_path / "nested-user-data"
    nested.write_text("#cloud-config\n" + yaml.safe_dump(document["autoinstall"]["user-data"]))
    result = subprocess.run(["cloud-init", "schema", "-c", str(nested)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_config() -> None:
    """The validation above can fail: a wrong type and an unknown top-level key are both caught."""
    site = site_with_arch("amd64")
    doc = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions())
    doc["shutdown"] = "halt"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(strict_schema()).validate(doc)
    doc["shutdown"] = "reboot"
    doc["late_commands"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(strict_schema()).validate(doc)


def test_cloud_init_rejects_user_data_without_version(tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nautoinstall:\n  identity: {hostname: x}\n")
    result = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "version" in result.stdout + result.stderr


def test_admin_logs_in_with_ssh_keys_only_and_has_no_password_hash(site: Site) -> None:
    doc = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions(username="admin"))
    assert doc["version"] == 1
    assert "identity" not in doc
    (user,) = doc["user-data"]["users"]
    assert user["name"] == "admin"
    assert user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == site.ssh_keys
    assert not {"passwd", "hashed_passwd", "plain_text_passwd"} & set(user)
    assert doc["user-data"]["hostname"] == "node1"
    assert doc["ssh"] == {"install-server": True, "allow-pw": False}
    assert "admin ALL=(ALL) NOPASSWD:ALL\n" in base64_payloads(doc)


@pytest.mark.parametrize(("name", "role"), ROLES)
def test_user_data_holds_no_password_hash_and_no_cluster_token(site: Site, name: str, role: str) -> None:
    text = user_data(site, machine(site, name), secrets(), SEED, InstallOptions())
    everything = text + base64_payloads(yaml.safe_load(text)["autoinstall"])
    assert not re.search(r"\$(?:1|5|6|y|2[aby])\$", everything), "a crypt hash is in the user-data"
    assert "token" not in everything.replace(SEED, "")
    assert "K10" not in everything


def base64_payloads(doc: dict[str, Any]) -> str:
    return "".join(
        base64.b64decode(m.group(1)).decode()
        for c in doc["late-commands"]
        for m in re.finditer(r"echo (\S+) \| base64 -d", c)
    )


def test_storage_by_path_or_serial(site: Site) -> None:
    by_path = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions())["storage"]
    assert by_path == {"layout": {"name": "direct", "match": {"path": "/dev/vda"}}}
    by_serial = autoinstall(site, machine(site, "node2"), secrets(), SEED, InstallOptions())["storage"]
    assert by_serial == {"layout": {"name": "direct", "match": {"serial": "WD-1234"}}}


def test_static_network_from_the_site(site: Site) -> None:
    doc = autoinstall(site, machine(site, "node3"), secrets(), SEED, InstallOptions())
    lan = doc["network"]["ethernets"]["lan"]
    assert lan["match"] == {"macaddress": "52:54:00:12:34:58"}
    assert lan["addresses"] == ["10.77.0.13/24"]
    assert lan["routes"] == [{"to": "default", "via": "10.77.0.1"}]
    assert lan["nameservers"] == {"addresses": ["10.77.0.1"], "search": ["home.arpa"]}
    assert yaml.safe_load(network_config(site, machine(site, "node3"))) == doc["network"]


def test_k3s_roles(site: Site) -> None:
    first = k3s_config_of(autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions()))
    assert first["cluster-init"] is True
    assert "server" not in first
    assert "token" not in first  # k3s generates the server token on the first server itself
    assert first["node-ip"] == "10.77.0.11"
    assert "10.77.0.40" in first["tls-san"]
    joining = k3s_config_of(autoinstall(site, machine(site, "node2"), secrets(), SEED, InstallOptions()))
    assert joining["server"] == "https://10.77.0.40:6443"
    assert "cluster-init" not in joining
    agent_doc = autoinstall(site, machine(site, "node3"), secrets(), SEED, InstallOptions())
    agent = k3s_config_of(agent_doc)
    assert agent == {"node-ip": "10.77.0.13", "server": "https://10.77.0.40:6443"}
    install = next(c for c in agent_doc["late-commands"] if "INSTALL_K3S_VERSION" in c)
    assert install.startswith("curtin in-target --target=/target -- sh -c ")
    assert "INSTALL_K3S_VERSION=v1.33.5+k3s1" in install
    assert "curl -sfL https://get.k3s.io |" in install
    assert install.endswith("sh -s - agent'")
    # joining nodes wait, disabled, for the token `task up` pushes over SSH; the first server starts on first boot
    assert "INSTALL_K3S_SKIP_ENABLE=true" in install
    first_doc = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions())
    first_install = next(c for c in first_doc["late-commands"] if "INSTALL_K3S_VERSION" in c)
    assert "INSTALL_K3S_SKIP_START=true" in first_install
    assert "INSTALL_K3S_SKIP_ENABLE" not in first_install


def test_kubernetes_kernel_settings_updates_and_reporting(site: Site) -> None:
    doc = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions())
    files = base64_payloads(doc)
    for line in ("net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1", "fs.inotify.max_user_watches"):
        assert line in files
    assert "br_netfilter\noverlay\n" in files
    assert 'APT::Periodic::Unattended-Upgrade "1";' in files
    assert "unattended-upgrades" in doc["packages"]
    assert doc["timezone"] == "Europe/Berlin"
    assert doc["late-commands"][-1] == f"curl -fsS -X POST --data nonce={NONCE} {SEED}installed"
    assert doc["reporting"] == {"hook": {"type": "webhook", "endpoint": SEED + "events"}}
    assert doc["shutdown"] == "reboot"


def test_late_commands_write_the_files_they_claim(tmp_path: Path, site: Site) -> None:
    """Run the file-writing late-commands for real with /target pointed at a temporary directory."""
    doc = autoinstall(site, machine(site, "node2"), secrets(), SEED, InstallOptions())
    target = tmp_path / "target"
    for command in doc["late-commands"]:
        if "base64 -d" in command:
            subprocess.run(["sh", "-c", command.replace("/target", str(target))], check=True)
    config = target / "etc/rancher/k3s/config.yaml"
    assert yaml.safe_load(config.read_text())["server"] == "https://10.77.0.40:6443"
    assert config.stat().st_mode & 0o777 == 0o600
    kube_vip = target / kubevip.MANIFEST_PATH.removeprefix("/")
    assert "kind: DaemonSet" in kube_vip.read_text()
    assert kube_vip.stat().st_mode & 0o777 == 0o600
    sudoers = target / "etc/sudoers.d/90-homelab-homelab"
    assert sudoers.read_text() == "homelab ALL=(ALL) NOPASSWD:ALL\n"
    assert sudoers.stat().st_mode & 0o777 == 0o440
    assert (target / "etc/sysctl.d/90-homelab-kubernetes.conf").read_text().startswith("net.ipv4.ip_forward = 1\n")


def test_meta_data_and_vendor_data(site: Site) -> None:
    meta = yaml.safe_load(meta_data(machine(site, "node2"), 3))
    assert meta == {"instance-id": "homelab-node2-3", "local-hostname": "node2"}
    assert yaml.safe_load(vendor_data()) == {}
    assert vendor_data().startswith("#cloud-config\n")


def test_nonces_are_fresh_and_shell_safe() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", new_nonce())
    assert new_nonce() != new_nonce()


def _kube_vip_manifest(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (command,) = [c for c in doc["late-commands"] if kubevip.MANIFEST_PATH in c]
    (payload,) = re.findall(r"echo (\S+) \| base64 -d", command)
    return [d for d in yaml.safe_load_all(base64.b64decode(payload).decode()) if d]


def test_servers_get_kube_vip_for_the_api_vip_and_the_pool_and_joins_use_the_vip(site: Site) -> None:
    first = autoinstall(site, machine(site, "node1"), secrets(), SEED, InstallOptions())
    docs = _kube_vip_manifest(first)
    problems = validate_documents(Document(d, "kube-vip", "user-data") for d in docs)
    assert not problems, "\n".join(problems)
    (daemonset,) = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert (env["address"], env["vip_arp"], env["cp_enable"], env["svc_enable"]) == (
        "10.77.0.40",
        "true",
        "true",
        "true",
    )
    assert pod["hostNetwork"] is True
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    (pool,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert (pool["metadata"]["name"], pool["data"]) == ("kubevip", {"range-global": "10.77.0.50-10.77.0.70"})
    assert k3s_config_of(first)["disable"] == ["servicelb"]
    joining = autoinstall(site, machine(site, "node2"), secrets(), SEED, InstallOptions())
    assert _kube_vip_manifest(joining) == docs
    assert k3s_config_of(joining)["server"] == "https://10.77.0.40:6443"
    agent = autoinstall(site, machine(site, "node3"), secrets(), SEED, InstallOptions())
    assert not [c for c in agent["late-commands"] if kubevip.MANIFEST_PATH in c], "agents run no kube-vip"
    assert k3s_config_of(agent)["server"] == "https://10.77.0.40:6443"


def test_without_vip_and_pool_there_is_no_kube_vip_and_servicelb_stays(site: Site) -> None:
    plain = site.model_copy(update={"k3s": site.k3s.model_copy(update={"api_vip": None, "lb_pool": None})})
    doc = autoinstall(plain, machine(plain, "node1"), secrets(), SEED, InstallOptions())
    assert not [c for c in doc["late-commands"] if kubevip.MANIFEST_PATH in c]
    assert "disable" not in k3s_config_of(doc)
    joining = autoinstall(plain, machine(plain, "node2"), secrets(), SEED, InstallOptions())
    assert k3s_config_of(joining)["server"] == "https://10.77.0.11:6443"
