"""Day 0 images: autoinstall serves `task images`' archives, and user-data's late-commands fetch each into k3s's
import folder and check its sha256. The late-commands run here for real (sh, curl, sha256sum) against the app on
loopback, with ``/target`` moved into the test's directory."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

from homelab_autoinstall.api import create_app
from homelab_autoinstall.settings import Settings
from homelab_autoinstall.userdata import IMAGE_IMPORT_DIR
from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import free_port

NODE1 = "52:54:00:12:34:56"


def _images_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    entries = []
    for name in ("dns", "homepage"):
        archive = folder / f"{name}-0123456789abcdef.tar"
        archive.write_bytes(f"an OCI archive of {name}".encode() * 1000)
        entries.append(
            {"name": name, "archive": archive.name, "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
        )
    (folder / "index.json").write_text(json.dumps({"images": entries}))
    return folder


@pytest.fixture
def served(tmp_path: Path, site_file: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    images = _images_dir(tmp_path)
    settings = Settings(
        site_file=site_file,
        state_dir=tmp_path / "state",
        public_url=f"http://127.0.0.1:{port}",
        wol_broadcast=IPv4Address("127.0.0.1"),
        images_dir=images,
    )
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", images
    server.shutdown()
    thread.join(10)


def _late_commands(base: str) -> list[str]:
    import urllib.request

    # the machine's install window armed first, as `task up` does (no seed URL otherwise)
    arm = urllib.request.Request(f"{base}/api/v1/machines/{NODE1}/arm", method="POST")
    with urllib.request.urlopen(arm):
        pass
    with urllib.request.urlopen(f"{base}/api/v1/boot/{NODE1}") as response:
        seed = json.loads(response.read())["seed_url"]
    with urllib.request.urlopen(seed + "user-data") as response:
        commands: list[str] = yaml.safe_load(response.read())["autoinstall"]["late-commands"]
    return commands


def test_late_commands_put_every_archive_into_the_k3s_import_folder(served: tuple[str, Path], tmp_path: Path) -> None:
    base, images = served
    commands = [c for c in _late_commands(base) if IMAGE_IMPORT_DIR in c]
    assert len(commands) == 2
    target = tmp_path / "target"
    for command in commands:
        subprocess.run(["sh", "-ec", command.replace("/target/", f"{target}/")], check=True, timeout=60)
    for entry in json.loads((images / "index.json").read_text())["images"]:
        copied = target / IMAGE_IMPORT_DIR.lstrip("/") / entry["archive"]
        assert copied.read_bytes() == (images / entry["archive"]).read_bytes()


def test_a_changed_archive_fails_the_install(served: tuple[str, Path], tmp_path: Path) -> None:
    base, images = served
    command = next(c for c in _late_commands(base) if IMAGE_IMPORT_DIR in c)
    for archive in images.glob("*.tar"):
        archive.write_bytes(b"tampered")
    proc = subprocess.run(["sh", "-ec", command.replace("/target/", f"{tmp_path}/t/")], capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"FAILED" in proc.stdout + proc.stderr


def test_images_are_fetched_before_k3s_is_installed(served: tuple[str, Path]) -> None:
    commands = _late_commands(served[0])
    last_image = max(i for i, c in enumerate(commands) if IMAGE_IMPORT_DIR in c)
    assert last_image < next(i for i, c in enumerate(commands) if "INSTALL_K3S_VERSION" in c)


def test_only_archives_of_the_index_are_served(served: tuple[str, Path]) -> None:
    import urllib.error
    import urllib.request

    base, images = served
    (images / "other.tar").write_bytes(b"not in the index")
    for name in ("other.tar", "index.json", "..%2Fstate"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}/images/{name}")
        assert caught.value.code == 404
        caught.value.close()


def test_an_images_dir_without_its_archives_is_refused_by_name(
    tmp_path: Path, site_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images_dir(tmp_path)
    next(images.glob("*.tar")).unlink()
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_SITE_FILE", str(site_file))
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_IMAGES_DIR", str(images))
    with pytest.raises(SettingsError, match=r"HOMELAB_AUTOINSTALL_IMAGES_DIR(.|\n)*archives missing"):
        load_settings(Settings)
    monkeypatch.setenv("HOMELAB_AUTOINSTALL_IMAGES_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match=r"HOMELAB_AUTOINSTALL_IMAGES_DIR(.|\n)*run \./task images"):
        load_settings(Settings)
