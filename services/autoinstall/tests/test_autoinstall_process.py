"""The real console script under gunicorn, configured only by environment variables (as the lab starts it),
driven over loopback HTTP by curl and busybox wget exactly as the installer and its late-commands do."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from autoinstall_site import site_data

from homelab_common.testing import free_port

SCRIPT = Path(sys.executable).parent / "homelab-autoinstall"


def env_for(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB_")}
    env.update(
        HOMELAB_AUTOINSTALL_SITE_FILE=str(tmp_path / "site.yaml"),
        HOMELAB_AUTOINSTALL_STATE_DIR=str(tmp_path / "state"),
        HOMELAB_AUTOINSTALL_PUBLIC_URL=f"http://127.0.0.1:{port}",
        HOMELAB_AUTOINSTALL_LOG_LEVEL="DEBUG",
        HOMELAB_HTTP_BIND=f"127.0.0.1:{port}",
        HOMELAB_SECRETS_DIR=str(tmp_path / "no-secrets"),
        **extra,
    )
    return env


@contextmanager
def running(tmp_path: Path, port: int, log: Path) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as stderr:
        process = subprocess.Popen([str(SCRIPT)], env=env_for(tmp_path, port), stderr=stderr, stdout=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service did not answer /healthz within 60 s"
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-fsS", "--max-time", "30", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def site_path(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_data()))
    return path


def test_install_flow_over_http_with_curl_and_busybox_wget(tmp_path: Path, site_path: Path) -> None:
    port = free_port()
    log = tmp_path / "service.log"
    with running(tmp_path, port, log) as base:
        assert json.loads(curl(f"{base}/api/v1/boot/52-54-00-12-34-56"))["action"] == "wait"
        curl("-X", "POST", f"{base}/api/v1/machines/52-54-00-12-34-56/arm")
        node1 = json.loads(curl(f"{base}/api/v1/boot/52-54-00-12-34-56"))
        seed = node1["seed_url"]
        assert seed.startswith(f"{base}/seed/52-54-00-12-34-56/")
        meta = yaml.safe_load(curl(seed + "meta-data"))
        assert meta["local-hostname"] == "node1"
        user_data = yaml.safe_load(curl(seed + "user-data"))["autoinstall"]
        # The real last late-command, run as the installer would run it.
        subprocess.run(["sh", "-c", user_data["late-commands"][-1]], check=True, timeout=60)
        assert json.loads(curl(f"{base}/api/v1/boot/525400123456")) == {
            "action": "local", "machine": "node1", "arch": "amd64",
        }  # fmt: skip
        refused = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", seed + "user-data"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
        assert refused.stdout == "403"
        curl("-X", "POST", f"{base}/api/v1/machines/52:54:00:12:34:58/arm")
        node3_seed = json.loads(curl(f"{base}/api/v1/boot/52:54:00:12:34:58"))["seed_url"]
        out = tmp_path / "ud"
        subprocess.run(["busybox", "wget", "-q", "-O", str(out), node3_seed + "user-data"], check=True, timeout=60)
        node3_nonce = re.search(r"nonce=([A-Za-z0-9_-]+)", out.read_text())
        assert node3_nonce is not None
        report = ["busybox", "wget", "-q", "-O", "-", "--post-data", node3_nonce.group(0), node3_seed + "installed"]
        subprocess.run(report, check=True, timeout=60, capture_output=True)
        assert json.loads(curl(f"{base}/api/v1/machines/52:54:00:12:34:58"))["state"] == "installed"
        nonce = re.search(r"nonce=([A-Za-z0-9_-]+)", user_data["late-commands"][-1])
        assert nonce is not None
        metrics = curl(f"{base}/metrics")
        assert 'homelab_autoinstall_machines{state="installed"}' in metrics
    # Restart on the same state file: the state is still there.
    with running(tmp_path, port, log) as base:
        assert json.loads(curl(f"{base}/api/v1/machines/52:54:00:12:34:56"))["state"] == "installed"
        assert json.loads(curl(f"{base}/api/v1/boot/52:54:00:12:34:57"))["action"] == "wait"
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    changes = [(line.get("machine"), line.get("to_state")) for line in lines if line.get("kind") == "state"]
    assert ("node1", "installing") in changes
    assert ("node1", "installed") in changes
    assert any(line["msg"] == "seed request refused" and line["machine"] == "node1" for line in lines)
    token = seed.rstrip("/").rsplit("/", 1)[1]
    for secret in (token, nonce.group(1), node3_nonce.group(1)):
        assert secret not in text


def test_bad_site_file_stops_the_process_naming_the_machine_and_field(tmp_path: Path) -> None:
    data = site_data()
    data["machines"][1]["mac"] = "52:54:00:12:34:56"
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data))
    result = subprocess.run([str(SCRIPT)], env=env_for(tmp_path, free_port()), capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "machines[1].mac: 52:54:00:12:34:56 is already used by machines[0]" in result.stderr


def test_bad_setting_stops_the_process_naming_the_variable(tmp_path: Path, site_path: Path) -> None:
    env = env_for(tmp_path, free_port(), HOMELAB_AUTOINSTALL_CHECK_SOURCE_IP="perhaps")
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "HOMELAB_AUTOINSTALL_CHECK_SOURCE_IP" in result.stderr
