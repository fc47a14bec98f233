"""The few Gitea REST API calls the bootstrap needs (Gitea API v1), each checking before acting.

``GET /api/v1/user`` (who the credential is), ``GET /api/v1/orgs/{org}`` then ``POST /api/v1/orgs``
(CreateOrgOption: ``username`` required), ``GET /api/v1/repos/{owner}/{repo}`` then ``POST /api/v1/orgs/{org}/repos``
(CreateRepoOption: ``name`` required), and for Woodpecker's login ``GET/POST /api/v1/user/applications/oauth2``
(CreateOAuth2ApplicationOptions: ``name``, ``redirect_uris``, ``confidential_client``; the 201 answer is the only
one carrying ``client_secret``) and ``DELETE /api/v1/user/applications/oauth2/{id}``. Basic authentication with
the generated admin credential.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any


class GiteaError(RuntimeError):
    """Gitea answered with an unexpected status; the message names the call and Gitea's message."""


class Gitea:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/api/v1{path}", data=data, method=method)  # noqa: S310
        request.add_header("Authorization", self._auth)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw or b"null")
            except ValueError:
                payload = {"message": raw.decode(errors="replace")[:200]}
            return exc.code, payload

    def _expect(self, what: str, status: int, payload: Any, *ok: int) -> Any:
        if status not in ok:
            message = payload.get("message") if isinstance(payload, dict) else payload
            raise GiteaError(f"Gitea {what}: HTTP {status}: {message}")
        return payload

    def whoami(self) -> str:
        status, payload = self._call("GET", "/user")
        return str(self._expect("GET /user (check the admin credential)", status, payload, 200)["login"])

    def ensure_org(self, org: str) -> bool:
        """Create the organisation unless it exists; True when created."""
        status, payload = self._call("GET", f"/orgs/{org}")
        if status == 200:
            return False
        self._expect(f"GET /orgs/{org}", status, payload, 404)
        status, payload = self._call("POST", "/orgs", {"username": org, "visibility": "private"})
        self._expect("POST /orgs", status, payload, 201)
        return True

    def ensure_repo(self, org: str, name: str) -> tuple[str, bool]:
        """Create the private repository unless it exists; returns (clone_url, created)."""
        status, payload = self._call("GET", f"/repos/{org}/{name}")
        if status == 200:
            return str(payload["clone_url"]), False
        self._expect(f"GET /repos/{org}/{name}", status, payload, 404)
        body = {"name": name, "private": True, "auto_init": False, "default_branch": "main"}
        status, payload = self._call("POST", f"/orgs/{org}/repos", body)
        repo = self._expect(f"POST /orgs/{org}/repos", status, payload, 201)
        return str(repo["clone_url"]), True

    def recreate_oauth_app(self, name: str, redirect_uri: str) -> tuple[str, str]:
        """A fresh OAuth2 application (Gitea shows a client secret only when it creates one): (client_id, secret).

        Called only when our copy of the secret is missing, so an existing application of that name is stale.
        """
        status, payload = self._call("GET", "/user/applications/oauth2")
        for app in self._expect("GET /user/applications/oauth2", status, payload, 200) or []:
            if app.get("name") == name:
                status, payload = self._call("DELETE", f"/user/applications/oauth2/{app['id']}")
                self._expect(f"DELETE /user/applications/oauth2/{app['id']}", status, payload, 204)
        body = {"name": name, "redirect_uris": [redirect_uri], "confidential_client": True}
        status, payload = self._call("POST", "/user/applications/oauth2", body)
        created = self._expect("POST /user/applications/oauth2", status, payload, 201)
        return str(created["client_id"]), str(created["client_secret"])
