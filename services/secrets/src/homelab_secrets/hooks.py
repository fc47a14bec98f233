"""Rotation hooks: change an admin password inside the app, with the current one, before the Secret changes.

Gitea and Grafana store their admin password in their own database at first start; a new value in the Secret alone
would lock the bootstrap, Woodpecker and people out. So a rotation first changes it in the app:

- **Gitea** (API v1): ``GET /api/v1/user`` with basic auth proves a credential; ``PATCH
  /api/v1/admin/users/{username}`` (EditUserOption: ``login_name`` and ``source_id`` required, ``password``,
  ``must_change_password``) sets the new one.
- **Grafana** (HTTP API): ``GET /api/user`` proves a credential; ``PUT /api/user/password``
  (ChangeUserPasswordCommand: ``oldPassword``, ``newPassword``) changes the signed-in user's password.

Every call is idempotent over a crash: if the current password no longer works but the new one does, the change
already happened (a reply lost, or the Secret write after it failed) and the hook succeeds without changing
anything. The new password is verified before success is reported.
"""

from __future__ import annotations

import abc
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from homelab_secrets.core import HookCall


class HookError(RuntimeError):
    """The app did not take the new password; the message says what it answered (never a password)."""


def _call(
    url: str, method: str, username: str, password: bytes, body: dict[str, Any] | None, timeout: float
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s) checked by the spec)
    token = base64.b64encode(username.encode() + b":" + password).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HookError(f"{method} {url}: cannot connect ({reason})") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return {"message": raw.decode(errors="replace")[:200]}


def _message(payload: Any) -> str:
    return str(payload.get("message", "")) if isinstance(payload, dict) else ""


class _Hook(abc.ABC):
    name = ""
    whoami_path = ""

    def __init__(self, timeout: float = 15.0) -> None:
        self.timeout = timeout

    def works(self, call: HookCall, password: bytes) -> bool:
        status, payload = _call(call.url + self.whoami_path, "GET", call.username, password, None, self.timeout)
        if status == 200:
            return True
        if status in (401, 403):
            return False
        raise HookError(f"{self.name}: GET {self.whoami_path}: HTTP {status} {_message(payload)}".strip())

    @abc.abstractmethod
    def change(self, call: HookCall) -> None:
        """Set ``call.new`` as the user's password, signed in with ``call.current``; HookError when refused."""

    def __call__(self, call: HookCall) -> None:
        if not call.username:
            raise HookError(f"{self.name}: the Secret has no user name (hook-username-key) to sign in with")
        if not self.works(call, call.current):
            if self.works(call, call.new):
                return  # changed already (an earlier attempt got that far)
            raise HookError(
                f"{self.name}: neither the current nor the new password signs in as {call.username}; "
                "the password was changed outside this controller: put the working one in the Secret"
            )
        try:
            self.change(call)
        except HookError:
            if self.works(call, call.new):
                return  # the app took it; only its answer was lost
            raise
        if not self.works(call, call.new):
            raise HookError(f"{self.name}: the change was acknowledged but the new password does not sign in")


class GiteaHook(_Hook):
    name = "gitea"
    whoami_path = "/api/v1/user"

    def change(self, call: HookCall) -> None:
        user = call.username
        body = {
            "login_name": user,
            "source_id": 0,
            "password": call.new.decode(),
            "must_change_password": False,
        }
        status, payload = _call(
            f"{call.url}/api/v1/admin/users/{user}", "PATCH", user, call.current, body, self.timeout
        )
        if status != 200:
            raise HookError(f"gitea: PATCH /api/v1/admin/users/{user}: HTTP {status} {_message(payload)}".strip())


class GrafanaHook(_Hook):
    name = "grafana"
    whoami_path = "/api/user"

    def change(self, call: HookCall) -> None:
        body = {"oldPassword": call.current.decode(), "newPassword": call.new.decode()}
        status, payload = _call(f"{call.url}/api/user/password", "PUT", call.username, call.current, body, self.timeout)
        if status != 200:
            raise HookError(f"grafana: PUT /api/user/password: HTTP {status} {_message(payload)}".strip())


def default_hooks(timeout: float = 15.0) -> dict[str, Callable[[HookCall], None]]:
    return {"gitea": GiteaHook(timeout), "grafana": GrafanaHook(timeout)}
