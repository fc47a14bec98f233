from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from homepage_factories import parts

from homelab_homepage.app import create_app
from homelab_homepage.settings import Settings


class _Site(http.server.BaseHTTPRequestHandler):
    """A tiny real web app for the probes: /ok, /nohead (HEAD refused), /broken (500), /slow (2 s), /forbidden."""

    protocol_version = "HTTP/1.1"

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?")[0]
        status = {"/ok": 200, "/broken": 500, "/forbidden": 403, "/moved": 302, "/slow": 200}.get(path, 404)
        if path == "/nohead":
            status = 405 if self.command == "HEAD" else 200
        if path == "/slow":
            time.sleep(2)
        body = b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 302:
            self.send_header("Location", "/ok")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    """Base URL of a real HTTP server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``make_app(start=False, **settings)``: a fresh app; its background threads are stopped afterwards."""
    made: list[Flask] = []

    def make(start: bool = False, **overrides: Any) -> Flask:
        values: dict[str, Any] = {"kubernetes": False, "href_check_interval_seconds": 0, "refresh_seconds": 0}
        values.update(overrides)
        app = create_app(Settings(**values), start=start)
        made.append(app)
        return app

    yield make
    for app in made:
        parts(app).stop()
