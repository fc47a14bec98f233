"""Contract fakes of the Gitea and Grafana admin APIs, served on 127.0.0.1 — NOT the real apps.

Neither app can run here, so the rotation hooks are tested against fakes that implement exactly the documented
contract of the calls the hooks make, with the apps' status codes and bodies:

- Gitea API v1: ``GET /api/v1/user`` (basic auth; 200 with ``login``, 401 ``{"message": ...}`` on a bad password);
  ``PATCH /api/v1/admin/users/{username}`` (site admin only; EditUserOption requires ``login_name`` and
  ``source_id``, else 422; sets ``password``; 200 with the user).
- Grafana HTTP API: ``GET /api/user`` (basic auth; 200 with ``login``, 401 ``{"message": "invalid username or
  password"}``); ``PUT /api/user/password`` (ChangeUserPasswordCommand ``oldPassword``/``newPassword``; 401
  ``Invalid old password``, 400 when the new one is shorter than 4 characters; 200 ``User password changed``).

Failure knobs: ``fail_change`` answers the change with an HTTP error without applying it; ``lose_reply`` applies
the change and then answers 500 (the app took it, the caller cannot know); ``after_change`` runs a callback once
the change is applied (to fail the Secret write that follows: the hook failing half way).
"""

from __future__ import annotations

import abc
import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _AdminApp(abc.ABC):
    name = ""

    def __init__(self, username: str, password: str) -> None:
        self.users = {username: password}
        self.admin = username
        self.fail_change: int | None = None
        self.lose_reply = False
        self.after_change: Callable[[], None] | None = None
        self.changes = 0
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _reply(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if fake.users.get(user) == password else None

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return {}
                return body if isinstance(body, dict) else {}

            def _handle(self) -> None:
                fake.calls.append(f"{self.command} {self.path}")
                status, body = fake.route(self.command, self.path, self._user(), self._body)
                self._reply(status, body)

            do_GET = do_PATCH = do_PUT = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _AdminApp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @abc.abstractmethod
    def route(self, method: str, path: str, user: str | None, body: Callable[[], dict[str, Any]]) -> tuple[int, Any]:
        """The app's answer (status, JSON body) to one request of its admin API."""

    def _apply(self, user: str, password: str) -> tuple[int, Any] | None:
        """Apply a change unless told to fail; None when applied and answered normally."""
        if self.fail_change is not None:
            return self.fail_change, {"message": "injected failure"}
        self.users[user] = password
        self.changes += 1
        if self.after_change is not None:
            self.after_change()
        if self.lose_reply:
            return 500, {"message": "injected: reply lost after the change"}
        return None


class FakeGitea(_AdminApp):
    name = "gitea"

    def route(self, method: str, path: str, user: str | None, body: Callable[[], dict[str, Any]]) -> tuple[int, Any]:
        if user is None:
            return 401, {"message": "user's password is invalid"}
        if (method, path) == ("GET", "/api/v1/user"):
            return 200, {"login": user, "is_admin": user == self.admin}
        if method == "PATCH" and path.startswith("/api/v1/admin/users/"):
            if user != self.admin:
                return 403, {"message": "reqSiteAdmin"}
            target = path.rsplit("/", 1)[1]
            if target not in self.users:
                return 404, {"message": "user does not exist"}
            data = body()
            if "login_name" not in data or "source_id" not in data:
                return 422, {"message": "[LoginName SourceID]: Required"}
            if "password" in data:
                failed = self._apply(target, str(data["password"]))
                if failed is not None:
                    return failed
            return 200, {"login": target}
        return 404, {"message": "not found"}


class FakeGrafana(_AdminApp):
    name = "grafana"

    def route(self, method: str, path: str, user: str | None, body: Callable[[], dict[str, Any]]) -> tuple[int, Any]:
        if user is None:
            return 401, {"message": "invalid username or password"}
        if (method, path) == ("GET", "/api/user"):
            return 200, {"login": user, "isGrafanaAdmin": user == self.admin}
        if (method, path) == ("PUT", "/api/user/password"):
            data = body()
            if data.get("oldPassword") != self.users[user]:
                return 401, {"message": "Invalid old password"}
            new = str(data.get("newPassword", ""))
            if len(new) < 4:
                return 400, {"message": "New password is too short"}
            failed = self._apply(user, new)
            if failed is not None:
                return failed
            return 200, {"message": "User password changed"}
        return 404, {"message": "Not found"}
