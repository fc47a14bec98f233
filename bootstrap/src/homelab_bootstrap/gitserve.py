"""Git's smart HTTP protocol from the controller: `git http-backend` (git's own CGI program) behind a WSGI server.

Until Gitea runs in the cluster, Argo CD clones the GitOps repository from here. Read-only by default; pushing
(``receive_pack=True``, used by tests as the stand-in for Gitea's git endpoint) requires the Basic credentials given.
"""

from __future__ import annotations

import base64
import hmac
import io
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("git http: " + format, *args)


def _read_chunked(stream: Any) -> bytes:
    """Decode a chunked request body (git sends large pushes chunked; wsgiref does not decode them)."""
    out = io.BytesIO()
    while True:
        size_line = stream.readline()
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return out.getvalue()
        out.write(stream.read(size))
        stream.readline()


class GitHttpBackend:
    """A WSGI app serving every repository under ``root`` (``/<name>.git``) through `git http-backend`."""

    def __init__(self, root: Path, *, receive_pack: bool = False, auth: tuple[str, str] | None = None) -> None:
        self.root = root
        self.receive_pack = receive_pack
        self.auth = auth
        git = shutil.which("git")
        if git is None:
            raise RuntimeError("git is not installed: install the git package")
        self.git = git

    def _authorised(self, environ: dict[str, Any]) -> bool:
        if self.auth is None:
            return True
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return hmac.compare_digest(header.encode(), expected.encode())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        pushing = "git-receive-pack" in (environ.get("QUERY_STRING", "") + environ.get("PATH_INFO", ""))
        if pushing and not self.receive_pack:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"this server is read-only\n"]
        if not self._authorised(environ):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = _read_chunked(environ["wsgi.input"])
        else:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ.get("HTTP_CONTENT_ENCODING", "") == "gzip":
            import gzip

            body = gzip.decompress(body)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", ""),
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        if self.receive_pack:
            env["REMOTE_USER"] = self.auth[0] if self.auth else "anonymous"
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "http.receivepack"
            env["GIT_CONFIG_VALUE_0"] = "true"
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = environ["HTTP_GIT_PROTOCOL"]
        proc = subprocess.run([self.git, "http-backend"], input=body, capture_output=True, env=env, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _ and b"\n\n" in proc.stdout:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = value.strip()
            elif key:
                headers.append((key.strip(), value.strip()))
        if proc.returncode != 0 and not head:
            log.warning("git http-backend failed", extra={"stderr": proc.stderr.decode(errors="replace")[-500:]})
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"git http-backend failed\n"]
        start_response(status, headers)
        return [payload]


class GitHttpServer:
    """Serve a directory of bare repositories over smart HTTP from a background thread."""

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, host: str | None = None) -> str:
        bound = self._server.server_address[0]
        return f"http://{host or (bound.decode() if isinstance(bound, bytes) else bound)}:{self.port}"

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
