"""Every image `task images` builds, started from the image as the chart runs it (tests/image_harness.py).

The first test session on a machine builds the Debian bases (mmdebstrap) and the images; later sessions reuse
them (tags derived from their inputs, archives under .cache/homelab/images). Per service image: the entrypoint
runs as 10001:10001 on a read-only root filesystem with only the chart's writable mounts, serves /healthz,
/readyz and /metrics on loopback, exits 2 naming a bad setting, and SIGTERM stops it within 2 s while it is busy
(homepage probing targets that never answer, dns holding its Lease) -- the issue's own figure, asserted here
because the cause (an exit that waited for threads) is fixed, not tuned.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from image_harness import chart_mounts, children, mount_options, run_once, running, uids

from homelab_bootstrap import images
from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_common.testing import free_port

REPO = Path(__file__).resolve().parents[2]
for _tests in ("autoinstall", "homepage"):  # their test-data helpers
    sys.path.insert(0, str(REPO / "services" / _tests / "tests"))
from autoinstall_site import site_data  # noqa: E402
from homepage_factories import homepage, ingress  # noqa: E402

# The machine's image cache, like uv's: the archives are content-addressed (tags are digests of their inputs), so
# every checkout on this machine (CI's fresh clones too) reuses what another built; a new machine builds once.
CACHE = Path(os.environ.get("HOMELAB_IMAGE_CACHE") or Path.home() / ".cache" / "homelab" / "images")
SERVICES = [image.name for image in images.discover(REPO) if image.target == "service"]
USER = "10001:10001"

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, buildah storage)"),
]


@pytest.fixture(scope="session")
def index() -> dict[str, dict[str, Any]]:
    """Build (first session) or reuse every image; the index entries by name."""
    entries = images.build(REPO, CACHE, print)
    for entry in entries:
        images.ensure_loaded(entry, CACHE)
    return {entry["name"]: entry for entry in entries}


def _kubeconfig(directory: Path, url: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }
    (directory / "kubeconfig").write_text(yaml.safe_dump(config))


@dataclass
class Setup:
    """What one service needs to run on loopback: settings, the files behind its read-only mounts, a bad setting."""

    name: str
    port: int
    env: dict[str, str]
    readonly: dict[str, Path] = field(default_factory=dict)
    bad: tuple[str, str] = ("", "")  # (variable, value) the service must refuse with exit status 2
    kube: KubeEmulator | None = None


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers: a hung probe target."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path, blackhole: str) -> Iterator[Setup]:
    name: str = request.param
    port = free_port()
    env = {"HOMELAB_HTTP_BIND": f"127.0.0.1:{port}"}
    if name == "autoinstall":
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "site.yaml").write_text(yaml.safe_dump(site_data()))
        env |= {
            "HOMELAB_AUTOINSTALL_SITE_FILE": "/etc/homelab/site.yaml",
            "HOMELAB_AUTOINSTALL_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        yield Setup(name, port, env, {"/etc/homelab": etc}, ("HOMELAB_AUTOINSTALL_WOL_PORT", "0"))
    elif name == "pxe":
        assets = tmp_path / "assets"
        (assets / "tftp").mkdir(parents=True)
        env |= {
            "HOMELAB_PXE_INTERFACE": "lo",
            "HOMELAB_PXE_SERVER_IP": "127.0.0.1",
            "HOMELAB_PXE_HTTP_PORT": str(port),
            "HOMELAB_PXE_BIND_ADDRESS": "127.0.0.1",
            "HOMELAB_PXE_DHCP_PORT": "0",
            "HOMELAB_PXE_PROXY_PORT": "0",
            "HOMELAB_PXE_TFTP_PORT": "0",
            "HOMELAB_PXE_REPLY_ADDRESS": "127.0.0.1",
            "HOMELAB_PXE_ASSETS_DIR": "/var/lib/homelab-pxe",
            "HOMELAB_PXE_TFTP_ROOT": "/var/lib/homelab-pxe/tftp",
        }
        yield Setup(name, port, env, {"/var/lib/homelab-pxe": assets}, ("HOMELAB_PXE_HTTP_PORT", "0"))
    else:
        with KubeEmulator() as kube:
            secrets = tmp_path / "kube"
            _kubeconfig(secrets, kube.url)
            env["KUBECONFIG"] = "/etc/homelab-test/kubeconfig"
            with kube.api_client() as client:
                _fill(name, kubernetes.client.NetworkingV1Api(client), blackhole)
            if name == "homepage":
                env |= {
                    "HOMELAB_HOMEPAGE_KUBECONFIG": "/etc/homelab-test/kubeconfig",
                    "HOMELAB_HOMEPAGE_PROBE_INTERVAL_SECONDS": "1",
                    "HOMELAB_HOMEPAGE_PROBE_TIMEOUT_SECONDS": "30",
                }
                bad = ("HOMELAB_HOMEPAGE_PROBE_CONCURRENCY", "0")
            elif name == "secrets":
                env |= {"HOMELAB_SECRETS_LEASE_NAMESPACE": "default", "HOMELAB_SECRETS_IDENTITY": "secrets-0"}
                bad = ("HOMELAB_SECRETS_HOOK_TIMEOUT_SECONDS", "0")
            elif name == "backup":
                bad = ("HOMELAB_BACKUP_CHECK_SUBSET", "most")
            else:
                env |= {
                    "HOMELAB_DNS_OWNER_ID": "test",
                    "HOMELAB_DNS_POLICY": "sync",
                    "HOMELAB_DNS_DOMAIN_FILTER": '["home.arpa"]',
                    "HOMELAB_DNS_DNS_HOST": "127.0.0.1",
                    "HOMELAB_DNS_DNS_PORT": str(free_port()),
                    "HOMELAB_DNS_LEASE_NAMESPACE": "default",
                    "HOMELAB_DNS_IDENTITY": "dns-0",
                }
                bad = ("HOMELAB_DNS_POLICY", "sometimes")
            yield Setup(name, port, env, {"/etc/homelab-test": secrets}, bad, kube)


def _fill(name: str, api: Any, blackhole: str) -> None:
    """20 Ingresses; for the homepage every app's monitor hangs, so probes are in flight when SIGTERM comes."""
    for i in range(20):
        notes = homepage(name=f"App {i}", siteMonitor=blackhole) if name == "homepage" else None
        api.create_namespaced_ingress("apps", ingress(f"app{i:02d}", annotations=notes, host=f"app{i:02d}.home.arpa"))


def test_every_service_with_an_entrypoint_has_an_image() -> None:
    """The list is derived from the workspace: a new service with src/ and homelab-<name> gets an image."""
    names = {image.name for image in images.discover(REPO)}
    assert {"autoinstall", "dns", "homepage", "pxe", "bootstrap"} <= names
    assert "common" not in names


def test_index_lists_archives_with_their_digests(index: dict[str, dict[str, Any]]) -> None:
    for name, entry in index.items():
        archive = CACHE / entry["archive"]
        assert archive.is_file(), name
        assert images.sha256_file(archive) == entry["sha256"], f"{archive} changed after the index was written"
        assert entry["digest"].startswith("sha256:")
        assert entry["ref"] == f"{images.PREFIX}/{name}:{entry['tag']}"


def test_an_unchanged_tree_rebuilds_nothing(index: dict[str, dict[str, Any]]) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = images.build(REPO, CACHE, lines.append)
    assert [e["ref"] for e in again] == [index[e["name"]]["ref"] for e in again]
    assert all(" cached" in line for line in lines if "homelab/" in line), lines
    assert not any("mmdebstrap" in line or "building" in line for line in lines), lines
    print(f"cached rebuild of {len(again)} images: {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("setup", SERVICES, indirect=True)
def test_service_image_runs_as_the_chart_runs_it(
    index: dict[str, dict[str, Any]], setup: Setup, tmp_path: Path
) -> None:
    name = setup.name
    ref = index[name]["ref"]
    writable, readonly_paths = chart_mounts(name)
    assert set(setup.readonly) <= set(readonly_paths) | {"/etc/homelab-test"}, "only the chart's read-only mounts"
    base = f"http://127.0.0.1:{setup.port}"
    with running(ref, tmp_path / "service.log", env=setup.env, writable=writable, readonly=setup.readonly) as svc:
        assert json.loads(svc.wait_http(base + "/healthz")) == {"status": "ok"}
        svc.wait_http(base + "/readyz")
        metrics = svc.wait_http(base + "/metrics").decode()
        assert "# TYPE" in metrics
        master = svc.process.pid
        assert uids(master) == [10001] * 4
        workers = children(master)
        assert workers, "gunicorn's worker is running"
        assert all(uids(w) == [10001] * 4 for w in workers)
        assert "ro" in mount_options(master, "/"), "the root filesystem is read-only"
        for path in writable:
            assert "rw" in mount_options(master, path), path
        if name == "homepage":
            assert setup.kube is not None
            wait_for(lambda: _probing(base), timeout=60)
        if name == "dns":
            assert setup.kube is not None
            kube = setup.kube
            wait_for(lambda: kube.objects("coordination.k8s.io/v1/leases", "default"), timeout=60)
        started = time.monotonic()
        svc.process.send_signal(signal.SIGTERM)
        code = svc.process.wait(timeout=60)
        seconds = time.monotonic() - started
        print(f"{name}: SIGTERM to exit {seconds:.2f} s")
        assert code == 0, svc.logs()
        assert seconds <= 2.0, f"{name} took {seconds:.2f} s to stop after SIGTERM:\n{svc.logs()}"
        if name == "dns":
            assert setup.kube is not None
            lease = next(iter(setup.kube.objects("coordination.k8s.io/v1/leases", "default").values()))
            assert not lease["spec"].get("holderIdentity"), "the Lease is released on the way out"


def _probing(base: str) -> bool:
    """True once the homepage has apps and its probes have started (their first round never finishes)."""
    with urllib.request.urlopen(base + "/api/v1/summary", timeout=5) as response:
        summary = json.loads(response.read())
    return bool(summary.get("synced")) and summary.get("apps", 0) >= 20


@pytest.mark.parametrize("setup", SERVICES, indirect=True)
def test_service_image_exits_2_naming_a_bad_setting(
    index: dict[str, dict[str, Any]], setup: Setup, tmp_path: Path
) -> None:
    name = setup.name
    variable, value = setup.bad
    writable, _ = chart_mounts(name)
    env = {**setup.env, variable: value}
    code, output = run_once(
        index[name]["ref"], tmp_path / "bad.log", env=env, writable=writable, readonly=setup.readonly
    )
    assert code == 2, output
    assert variable in output, output


def test_bootstrap_image_has_its_tools_on_a_read_only_root(index: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    ref = index["bootstrap"]["ref"]
    writable, _ = chart_mounts("bootstrap")
    for argv in (["git", "--version"], ["helm", "version", "--short"], ["ssh", "-V"]):
        code, output = run_once(ref, tmp_path / "tools.log", env={}, writable=writable, entrypoint=argv)
        assert code == 0, f"{argv}: {output}"
    probe = ["python3", "-c", "open('/app/x', 'w')"]
    code, output = run_once(ref, tmp_path / "ro.log", env={}, writable=writable, entrypoint=probe)
    assert code != 0, output
    assert "Read-only file system" in output, output
    code, output = run_once(ref, tmp_path / "job.log", env={}, writable=writable, args=["job", "--site", "/nope.yaml"])
    assert code == 2, output
    assert "/nope.yaml" in output, output
