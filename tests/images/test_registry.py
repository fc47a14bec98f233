"""Day 2 delivery against a real registry: CNCF distribution (Debian's docker-registry) on loopback.

Two registries on one storage, as homelab_bootstrap.registry designs them: the push registry with the push
credential in its htpasswd, and the nodes' pull endpoint, a read-only registry (``storage.maintenance.readonly``)
serving the same storage, whose htpasswd holds only the nodes' credential minted by the bootstrap. ``task images
--push`` (homelab_bootstrap.images.push) pushes a real image with the push credential; the nodes' credential
pulls it from the pull endpoint, is refused by the push registry, and cannot upload to the pull endpoint. The
image pushed is the smallest we build (the restic tool image, ~20 MB), so the test takes seconds.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab_bootstrap import images, registry
from homelab_common.k8s.testing import wait_for
from homelab_common.testing import free_port

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HOMELAB_IMAGE_CACHE") or Path.home() / ".cache" / "homelab" / "images")
DISTRIBUTION = "/usr/bin/docker-registry"
MANIFESTS = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

#: The pull endpoint's read-only switch, as the chart sets it (an environment override of the configuration file)
_PULL = (REPO / "gitops/platform/registry/templates/pull.yaml").read_text()
PULL_READONLY = re.search(r"name: REGISTRY_STORAGE_MAINTENANCE_READONLY\s+value: \"([^\"]+)\"", _PULL)[1]  # type: ignore[index]

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (buildah storage)"),
]


@contextmanager
def distribution(tmp: Path, htpasswd: str, storage: Path, *, readonly: bool = False) -> Iterator[str]:
    """A registry on 127.0.0.1 with htpasswd auth on ``storage``; yields host:port. Read-only (refusing writes)
    the way gitops/platform/registry/templates/pull.yaml makes it: its environment override on top of the file."""
    tmp.mkdir(parents=True)
    (tmp / "htpasswd").write_text(htpasswd)
    address = f"127.0.0.1:{free_port()}"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": address, "secret": "test"},
        "auth": {"htpasswd": {"realm": "homelab", "path": str(tmp / "htpasswd")}},
    }
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    with (tmp / "registry.log").open("wb") as log:
        env = dict(os.environ) | ({"REGISTRY_STORAGE_MAINTENANCE_READONLY": PULL_READONLY} if readonly else {})
        proc = subprocess.Popen([DISTRIBUTION, "serve", str(tmp / "config.yml")], stdout=log, stderr=log, env=env)
    try:
        wait_for(lambda: _status(f"http://{address}/v2/", None) == 401, timeout=30)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def _request(url: str, auth: registry.Credential | None, method: str = "GET") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers={"Accept": MANIFESTS})
    if auth:
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)
    except OSError:
        return 0, {}


def _status(url: str, auth: registry.Credential | None, method: str = "GET") -> int:
    return _request(url, auth, method)[0]


def test_push_credential_pushes_and_the_nodes_credential_only_pulls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _ = images.ensure_tool(REPO, CACHE, print, "restic")
    entry = {"name": "restic", "tag": ref.rsplit(":", 1)[1], "ref": ref, "archive": images._archive(CACHE, ref).name}
    admin = registry.Credential("admin", "push-" + "x" * 27)
    state = tmp_path / "state"
    nodes = registry.node_credential(state)
    assert stat.S_IMODE((state / registry.FILE).stat().st_mode) == 0o600
    assert registry.node_credential(state) == nodes, "minted once, then reused"
    mirror_htpasswd = registry.secret_manifest(nodes)["stringData"]["auth"]
    (tmp_path / "nodes.htpasswd").write_text(mirror_htpasswd)
    check = ["htpasswd", "-vb", str(tmp_path / "nodes.htpasswd"), nodes.username, nodes.password]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0, "Apache's htpasswd accepts it"

    storage = tmp_path / "storage"
    with (
        distribution(tmp_path / "push", registry.htpasswd_line(admin) + "\n", storage) as push,
        distribution(tmp_path / "pull", mirror_htpasswd, storage, readonly=True) as mirror,
    ):
        monkeypatch.setenv("HOMELAB_REGISTRY_USERNAME", admin.username)
        monkeypatch.setenv("HOMELAB_REGISTRY_PASSWORD", admin.password)
        lines: list[str] = []
        images.push([entry], CACHE, push, lines.append, tls_verify=False)
        assert len(lines) == 1, lines
        assert "pushed" in lines[0], lines
        manifest = f"/v2/homelab/restic/manifests/{entry['tag']}"
        pushed, headers = _request(f"http://{push}{manifest}", admin)
        assert pushed == 200
        # the nodes' credential pulls the same image from the pull endpoint ...
        pulled, mirrored = _request(f"http://{mirror}{manifest}", nodes)
        assert pulled == 200
        assert mirrored["Docker-Content-Digest"] == headers["Docker-Content-Digest"]
        # ... and nothing else: not at the push registry, no upload to the pull endpoint, no wrong password
        assert _status(f"http://{push}{manifest}", nodes) == 401
        upload = _status(f"http://{mirror}/v2/homelab/restic/blobs/uploads/", nodes, "POST")
        assert upload == 405, "the pull endpoint refuses uploads (read-only mode)"
        assert _status(f"http://{mirror}{manifest}", registry.Credential(nodes.username, "wrong")) == 401


def test_push_refuses_without_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMELAB_REGISTRY_USERNAME", raising=False)
    monkeypatch.setenv("HOMELAB_REGISTRY_PASSWORD", "x")
    with pytest.raises(images.ImageError, match="HOMELAB_REGISTRY_USERNAME"):
        images.push([], CACHE, "127.0.0.1:1", print)


def test_push_refuses_while_a_chart_pins_another_tag() -> None:
    """`--push` checks the pins first: Argo CD deploys the pinned tag, so pushing another one would roll out nothing."""
    _, helm_sha = images._helm(REPO)
    entries = [{"name": i.name, "tag": images.image_tag(REPO, i, helm_sha)} for i in images.discover(REPO)]
    assert images.stale_pins(REPO, entries) == []
    dns = next(e for e in entries if e["name"] == "dns")
    dns["tag"] = "0000000000000000"
    assert images.stale_pins(REPO, entries) == ["charts/dns/values.yaml (builds 0000000000000000)"]
