"""Day 2 images: user-data writes k3s's registries.yaml, pointing our image names (``homelab.internal/*``) at the
read-only pull endpoint with the nodes' credential the bootstrap minted (homelab_bootstrap.registry). The
late-command runs here for real (sh, base64) with ``/target`` moved into the test's directory, and the file it
writes is parsed as k3s reads it. That the registry accepts the credential is tests/images/test_registry.py."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

from homelab_autoinstall.api import create_app
from homelab_autoinstall.settings import Settings
from homelab_autoinstall.userdata import REGISTRIES_PATH
from homelab_bootstrap import registry
from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import free_port

NODE1 = "52:54:00:12:34:56"
PULL_URL = "https://registry-pull.home.arpa"


def _user_data(settings: Settings) -> dict[str, object]:
    port = free_port()
    settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/machines/{NODE1}/arm", method="POST")):
            pass
        with urllib.request.urlopen(f"{base}/api/v1/boot/{NODE1}") as response:
            seed = json.loads(response.read())["seed_url"]
        with urllib.request.urlopen(seed + "user-data") as response:
            data: dict[str, object] = yaml.safe_load(response.read())
            return data
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def settings(tmp_path: Path, site_file: Path) -> Settings:
    registry.node_credential(tmp_path / "up-state")  # what `task up` mints in the site's state folder
    return Settings(
        site_file=site_file,
        state_dir=tmp_path / "state",
        wol_broadcast=IPv4Address("127.0.0.1"),
        registry_url=PULL_URL,
        registry_credential_file=tmp_path / "up-state" / registry.FILE,
    )


def test_user_data_writes_a_valid_registries_yaml(settings: Settings, tmp_path: Path) -> None:
    autoinstall = _user_data(settings)["autoinstall"]
    assert isinstance(autoinstall, dict)
    (command,) = [c for c in autoinstall["late-commands"] if REGISTRIES_PATH in c]
    target = tmp_path / "target"
    subprocess.run(["sh", "-ec", command.replace("/target/", f"{target}/")], check=True, timeout=60)
    written = target / REGISTRIES_PATH.lstrip("/")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600, "it holds a credential: root only"
    config = yaml.safe_load(written.read_text())
    credential = registry.node_credential(tmp_path / "up-state")
    # docs.k3s.io/installation/private-registry: mirrors (by the images' registry name) and configs (by endpoint host)
    assert config == {
        "mirrors": {"homelab.internal": {"endpoint": [PULL_URL]}},
        "configs": {"registry-pull.home.arpa": {"auth": {"username": "nodes", "password": credential.password}}},
    }
    commands = autoinstall["late-commands"]
    assert commands.index(command) < next(i for i, c in enumerate(commands) if "INSTALL_K3S_VERSION" in c), (
        "in place before k3s first starts (it reads registries.yaml only at start)"
    )


def test_without_a_registry_no_registries_yaml(settings: Settings) -> None:
    plain = settings.model_copy(update={"registry_url": None, "registry_credential_file": None})
    autoinstall = _user_data(plain)["autoinstall"]
    assert isinstance(autoinstall, dict)
    assert not [c for c in autoinstall["late-commands"] if REGISTRIES_PATH in c]


def test_registry_settings_are_refused_by_name(
    tmp_path: Path, site_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_SITE_FILE", str(site_file))
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_REGISTRY_URL", PULL_URL)
    with pytest.raises(SettingsError, match="registry_credential_file go together"):
        load_settings(Settings)
    (tmp_path / "cred.json").write_text('{"username": "nodes"}')
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_REGISTRY_CREDENTIAL_FILE", str(tmp_path / "cred.json"))
    with pytest.raises(
        SettingsError, match=r"HOMELAB_AUTOINSTALL_REGISTRY_CREDENTIAL_FILE(.|\n)*username and password"
    ):
        load_settings(Settings)
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_REGISTRY_URL", "ftp://x")
    with pytest.raises(SettingsError, match="HOMELAB_AUTOINSTALL_REGISTRY_URL"):
        load_settings(Settings)
