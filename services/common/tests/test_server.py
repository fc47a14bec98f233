"""The shared gunicorn runner really serves an app: one worker, threads, JSON request logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from homelab_common.testing import free_port

APP = """
from flask import Flask
from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.web import install_observability

def create_app() -> Flask:
    app = Flask("demo")
    install_observability(app, "demo")
    return app

if __name__ == "__main__":
    configure_logging("demo")
    serve(create_app, service="demo")
"""


def test_serve_runs_the_app_under_gunicorn(tmp_path: Path) -> None:
    script = tmp_path / "demo_app.py"
    script.write_text(APP)
    port = free_port()
    env = {**os.environ, "HOMELAB_HTTP_BIND": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                assert proc.poll() is None, "the server exited early"
                time.sleep(0.2)
        assert body == {"status": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert all(line["service"] == "demo" for line in lines)
    assert any("Booting worker" in line["msg"] for line in lines)
    assert any("gthread" in line["msg"] for line in lines)
    assert not any(line.get("path") == "/readyz" for line in lines), "probe requests are logged at debug only"


@pytest.mark.parametrize("name", ["bind", "workers", "worker_class", "threads", "control_socket_disable"])
def test_gunicorn_options_come_from_the_shared_config(name: str) -> None:
    from homelab_common import gunicorn_conf
    from homelab_common.server import gunicorn_options

    assert gunicorn_options()[name] == getattr(gunicorn_conf, name)
    assert gunicorn_options(workers=1)["workers"] == 1


def test_the_master_does_not_need_the_web_stack() -> None:
    """serve() runs in gunicorn's master, which only supervises: importing it must not load flask."""
    script = "import sys, homelab_common.server; assert 'flask' not in sys.modules, 'flask imported'"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


STUCK_APP = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from flask import Flask
from homelab_common.logs import configure_logging
from homelab_common.server import on_stop, serve
from homelab_common.web import install_observability

def create_app() -> Flask:
    app = Flask("stuck")
    install_observability(app, "stuck")
    pool = ThreadPoolExecutor(1)  # its worker thread is not a daemon: a plain exit would wait for it
    pool.submit(threading.Event().wait, 600)
    on_stop(lambda: open(sys.argv[1], "w").write("stopped"))
    return app

if __name__ == "__main__":
    configure_logging("stuck")
    serve(create_app, service="stuck")
"""


def test_sigterm_ends_the_worker_without_waiting_for_its_threads(tmp_path: Path) -> None:
    """A stuck non-daemon thread (a probe that never returns) must not hold the worker until graceful_timeout:
    on_stop callbacks run, then the worker exits, well before gunicorn's 10 s graceful timeout would kill it."""
    script = tmp_path / "stuck_app.py"
    script.write_text(STUCK_APP)
    marker = tmp_path / "stopped"
    port = free_port()
    env = {**os.environ, "HOMELAB_HTTP_BIND": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, "the server exited early"
                assert time.monotonic() < deadline, "no /healthz within 60 s"
                time.sleep(0.2)
        proc.terminate()
        _, stderr = proc.communicate(timeout=9)  # less than graceful_timeout: the master did not have to kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert marker.read_text() == "stopped"
    assert "Worker exiting" in stderr
