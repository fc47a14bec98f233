"""The bootstrap job against the Kubernetes emulator, a real smart-HTTP git server and a Gitea contract fake.

Helm: `helm template` of the root chart runs the real helm binary (it is local and offline); `helm status/get/
dependency build/upgrade --install` against a cluster cannot run here, so those calls go to a recording runner and
the test asserts the exact command lines.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from homelab_bootstrap import gitops, job, registry
from homelab_bootstrap.gitserve import GitHttpBackend, GitHttpServer
from homelab_bootstrap.kube import Kube
from homelab_bootstrap.seed import SeedRepo
from homelab_common.k8s.testing import KubeEmulator, kube
from homelab_common.site import load_site

__all__ = ["kube"]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "site.example.yaml"
HELM = str(REPO / ".cache" / "bin" / "helm") if (REPO / ".cache/bin/helm").exists() else "helm"


class FakeHelm:
    """Records cluster-facing helm calls; passes `helm template` (offline) to the real binary."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.installed_values: dict[str, Any] | None = None

    def __call__(self, args: Sequence[str]) -> tuple[int, str, str]:
        args = list(args)
        if args[1] == "template":
            proc = subprocess.run(args, capture_output=True, text=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr
        self.calls.append(args[1:])
        if args[1] == "status":
            if self.installed_values is None:
                return 1, "", "Error: release: not found"
            return 0, json.dumps({"info": {"status": "deployed"}}), ""
        if args[1] == "get":
            return 0, json.dumps(self.installed_values), ""
        if args[1] == "upgrade":
            values = Path(args[args.index("--values") + 1])
            import yaml

            self.installed_values = yaml.safe_load(values.read_text())
        return 0, "", ""


class SpyKube(Kube):
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.writes: list[tuple[str, str, str]] = []

    def apply(self, obj: dict[str, Any], *, create_only: bool = False) -> Any:
        outcome = super().apply(obj, create_only=create_only)
        if outcome != "unchanged":
            self.writes.append((obj["kind"], obj["metadata"]["name"], outcome))
        return outcome


class FakeArgoCD:
    """Plays Argo CD's part: once the root Application exists, every expected Application appears Synced+Healthy."""

    def __init__(self, kube: Kube, names: set[str]) -> None:
        self.kube, self.names = kube, names
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _app(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
        }

    def _loop(self) -> None:
        while not self.stop.wait(0.05):
            if self.kube.get(self._app("root")) is None:
                continue
            for name in sorted(self.names):
                status = {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}
                if name == "root":
                    self.kube.apply({**self._app(name), "status": status})
                else:
                    spec = {"project": "default", "destination": {"namespace": name}}
                    self.kube.apply({**self._app(name), "spec": spec, "status": status}, create_only=True)

    def __enter__(self) -> FakeArgoCD:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _healthy(kube: KubeEmulator, name: str) -> None:
    status = {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"}
    Kube(kube.api_client()).apply(app | {"metadata": {"name": name, "namespace": "argocd"}, "status": status})


def _context(kube: KubeEmulator, tmp_path: Path, helm: FakeHelm, **extra: Any) -> job.Context:
    site = load_site(EXAMPLE)
    return job.Context(
        site=site,
        site_text=EXAMPLE.read_text(),
        source=REPO,
        state=tmp_path / "state",
        kube=SpyKube(kube.api_client()),
        helm=HELM,
        run=helm,
        repo_url="http://192.168.1.5:8418/homelab.git",
        say=lambda line: None,
        poll=0.05,
        wait_timeout=60,
        **extra,
    )


def _filled_by_the_controller(kube: KubeEmulator, password: str) -> None:
    """gitea/gitea-admin as the secrets controller leaves it (Argo CD applies it from gitops/system/secrets)."""
    data = {"username": "gitea-admin", "password": password}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitea-admin", "namespace": "gitea"}}
    secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    Kube(kube.api_client()).apply(secret)


def _versions(kube: KubeEmulator) -> dict[str, str]:
    out = {}
    for resource in ("v1/namespaces", "v1/secrets", "argoproj.io/v1alpha1/applicationsets"):
        for key, obj in kube.objects(resource).items():
            out[f"{resource}/{key}"] = obj["metadata"]["resourceVersion"]
    out["root"] = kube.objects("argoproj.io/v1alpha1/applications")["argocd/root"]["metadata"]["resourceVersion"]
    return out


def test_bootstrap_applies_in_order_waits_for_apps_and_a_rerun_changes_nothing(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    helm = FakeHelm()
    ctx = _context(kube, tmp_path, helm)
    assert isinstance(ctx.kube, SpyKube)
    lines: list[str] = []
    ctx.say = lines.append
    with FakeArgoCD(Kube(kube.api_client()), job.expected_apps(ctx)):
        changes = job.run(ctx, [s for s in job.STEPS if s[0] != "gitea"])
    kinds = [kind for kind, _, _ in ctx.kube.writes]
    assert kinds == sorted(kinds, key=["Namespace", "Secret", "ApplicationSet", "Application"].index)
    assert ("ApplicationSet", "system", "created") in ctx.kube.writes
    assert ("Application", "root", "created") in ctx.kube.writes
    assert "argocd installed with helm" in changes
    assert any(line.startswith("apps: ") and "Synced and Healthy" in line for line in lines)
    # credentials are annotated Secrets in gitops/system/secrets, filled by the secrets controller: none made here
    # but the pull endpoint's, from the nodes' credential minted outside the cluster (it is on the nodes already)
    assert set(kube.objects("v1/secrets")) == {"registry/registry-nodes"}

    before = _versions(kube)
    ctx.kube.writes.clear()
    helm.calls.clear()
    with FakeArgoCD(Kube(kube.api_client()), job.expected_apps(ctx)):
        again = job.run(ctx, [s for s in job.STEPS if s[0] != "gitea"])
    assert again == []
    assert ctx.kube.writes == []
    assert [c[0] for c in helm.calls] == ["status", "get"], "a rerun must not reinstall Argo CD"
    assert _versions(kube) == before


def test_the_argocd_step_runs_exactly_these_helm_commands(kube: KubeEmulator, tmp_path: Path) -> None:
    helm = FakeHelm()
    ctx = _context(kube, tmp_path, helm)
    job.step_repository(ctx)
    job.step_argocd(ctx)
    chart = str(tmp_path / "state" / "gitops-work" / "gitops" / "system" / "argocd")
    assert helm.calls == [
        ["status", "argocd", "-n", "argocd", "-o", "json"],
        ["dependency", "build", chart],
        [
            "upgrade",
            "--install",
            "argocd",
            chart,
            "--namespace",
            "argocd",
            "--values",
            chart + "/values-site.yaml",
            "--wait",
            "--timeout",
            "15m",
        ],
    ]


def test_a_failure_midway_resumes_where_it_stopped(kube: KubeEmulator, tmp_path: Path) -> None:
    helm = FakeHelm()
    ctx = _context(kube, tmp_path, helm)
    kube.fail("create", "applicationsets", status=500, times=1)
    steps = [s for s in job.STEPS if s[0] not in ("wait", "gitea")]
    with pytest.raises(ApiException):
        job.run(ctx, steps)
    assert "argocd/root" not in kube.objects("argoproj.io/v1alpha1/applications")
    assert isinstance(ctx.kube, SpyKube)
    ctx.kube.writes.clear()
    helm.calls.clear()
    job.run(ctx, steps)
    kinds = {kind for kind, _, _ in ctx.kube.writes}
    assert kinds == {"ApplicationSet", "Application"}, "namespaces and secrets were done: not written again"
    assert "upgrade" not in [c[0] for c in helm.calls]
    assert "argocd/root" in kube.objects("argoproj.io/v1alpha1/applications")


def test_argo_cd_can_clone_the_seed_repository_over_smart_http(tmp_path: Path) -> None:
    site = load_site(EXAMPLE)
    seed = SeedRepo(tmp_path / "state")
    assert seed.update(REPO, site, EXAMPLE.read_text()) is True
    assert seed.update(REPO, site, EXAMPLE.read_text()) is False, "nothing changed: no new commit"
    with GitHttpServer(GitHttpBackend(seed.served)) as server:
        url = f"{server.url()}/homelab.git"
        subprocess.run(["git", "clone", "-q", url, str(tmp_path / "clone")], check=True, capture_output=True)
        values = tmp_path / "clone" / "gitops" / "system" / "argocd" / "values-site.yaml"
        assert "argocd.home.arpa" in values.read_text()
        assert (tmp_path / "clone" / "charts" / "library" / "Chart.yaml").is_file()
        # the library travels inside each chart that uses it: Argo CD's helm builds one level of file:// only
        assert (tmp_path / "clone" / "charts" / "bootstrap" / "charts" / "library" / "Chart.yaml").is_file()
        assert (tmp_path / "clone" / "site.yaml").read_text() == EXAMPLE.read_text()
        head = subprocess.run(
            ["git", "-C", str(tmp_path / "clone"), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        assert head.stdout.strip() == seed.head()
        push = subprocess.run(
            ["git", "-C", str(tmp_path / "clone"), "push", url, "HEAD:refs/heads/evil"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert push.returncode != 0, "the controller's server is read-only"


# ------------------------------------------------------------------------------------- Gitea contract fake


class GiteaContractFake:
    """Gitea's REST API cannot run here: this fake answers the endpoints we call as Gitea documents them.

    Requests and responses follow Gitea's API v1 (swagger): ``GET /api/v1/user`` → 200 User {login}; 401 with a
    wrong password. ``GET /api/v1/orgs/{org}`` → 200 Organization or 404. ``POST /api/v1/orgs`` with
    CreateOrgOption (``username`` required; ``visibility`` public|limited|private) → 201 Organization, 422 when the
    name is taken. ``GET /api/v1/repos/{owner}/{repo}`` → 200 Repository {clone_url, ...} or 404. ``POST
    /api/v1/orgs/{org}/repos`` with CreateRepoOption (``name`` required) → 201 Repository, 409 when it exists. Git
    itself is real: ``/{org}/{repo}.git`` is `git http-backend` with receive-pack, behind the same Basic auth.
    OAuth2 applications: ``GET /api/v1/user/applications/oauth2`` → 200 [OAuth2Application] (no client_secret),
    ``POST`` with CreateOAuth2ApplicationOptions (``name``, ``redirect_uris``, ``confidential_client``) → 201
    OAuth2Application with ``client_id`` and ``client_secret``, ``DELETE .../{id}`` → 204.
    """

    def __init__(self, root: Path, username: str, password: str, cluster_url: str) -> None:
        self.root, self.username, self.password, self.cluster_url = root, username, password, cluster_url
        self.orgs: dict[str, dict[str, Any]] = {}
        self.repos: dict[str, dict[str, Any]] = {}
        self.oauth_apps: dict[int, dict[str, Any]] = {}
        self.oauth_ids = 0
        self.requests: list[tuple[str, str]] = []
        self.git = GitHttpBackend(root, receive_pack=True, auth=(username, password))

    def _json(self, start: Any, status: str, body: Any) -> list[bytes]:
        start(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def __call__(self, environ: dict[str, Any], start: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if not path.startswith("/api/v1/"):
            return self.git(environ, start)
        self.requests.append((method, path))
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if environ.get("HTTP_AUTHORIZATION") != expected:
            return self._json(start, "401 Unauthorized", {"message": "user does not exist", "url": ""})
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"null")
        route = path.removeprefix("/api/v1")
        if method == "GET" and route == "/user":
            return self._json(start, "200 OK", {"id": 1, "login": self.username, "is_admin": True})
        if method == "POST" and route == "/orgs":
            if not body.get("username"):
                return self._json(start, "422 Unprocessable Entity", {"message": "[Username]: Required"})
            if body["username"] in self.orgs:
                return self._json(start, "422 Unprocessable Entity", {"message": "user already exists"})
            org = {"id": len(self.orgs) + 2, "name": body["username"], "username": body["username"]}
            org["visibility"] = body.get("visibility", "public")
            self.orgs[body["username"]] = org
            return self._json(start, "201 Created", org)
        if match := re.fullmatch(r"/orgs/([^/]+)", route):
            org = self.orgs.get(match[1])
            return (
                self._json(start, "200 OK", org)
                if org
                else self._json(start, "404 Not Found", {"message": "Not Found"})
            )
        if match := re.fullmatch(r"/orgs/([^/]+)/repos", route):
            owner = match[1]
            name = body.get("name")
            if owner not in self.orgs:
                return self._json(start, "404 Not Found", {"message": "Not Found"})
            if f"{owner}/{name}" in self.repos:
                return self._json(
                    start, "409 Conflict", {"message": "The repository with the same name already exists."}
                )
            subprocess.run(
                ["git", "init", "-q", "--bare", "-b", "main", str(self.root / owner / f"{name}.git")], check=True
            )
            repo = {
                "id": len(self.repos) + 1,
                "name": name,
                "full_name": f"{owner}/{name}",
                "private": bool(body.get("private")),
                "clone_url": f"{self.cluster_url}/{owner}/{name}.git",
                "default_branch": body.get("default_branch", "main"),
            }
            self.repos[f"{owner}/{name}"] = repo
            return self._json(start, "201 Created", repo)
        if route == "/user/applications/oauth2" and method == "GET":
            listed = [{k: v for k, v in app.items() if k != "client_secret"} for app in self.oauth_apps.values()]
            return self._json(start, "200 OK", listed)
        if route == "/user/applications/oauth2" and method == "POST":
            if not body.get("name") or not body.get("redirect_uris"):
                return self._json(start, "422 Unprocessable Entity", {"message": "[Name]: Required"})
            self.oauth_ids += 1  # database ids: never reused
            app_id = self.oauth_ids
            self.oauth_apps[app_id] = {
                "id": app_id,
                "name": body["name"],
                "redirect_uris": body["redirect_uris"],
                "confidential_client": body.get("confidential_client", True),
                "client_id": f"client-{app_id}",
                "client_secret": f"secret-{app_id}",
                "created": "2026-11-26T00:00:00Z",
            }
            return self._json(start, "201 Created", self.oauth_apps[app_id])
        if (match := re.fullmatch(r"/user/applications/oauth2/(\d+)", route)) and method == "DELETE":
            if self.oauth_apps.pop(int(match[1]), None) is None:
                return self._json(start, "404 Not Found", {"message": "Not Found"})
            start("204 No Content", [])
            return [b""]
        if match := re.fullmatch(r"/repos/([^/]+)/([^/]+)", route):
            repo = self.repos.get(f"{match[1]}/{match[2]}")
            return (
                self._json(start, "200 OK", repo)
                if repo
                else self._json(start, "404 Not Found", {"message": "Not Found"})
            )
        return self._json(start, "404 Not Found", {"message": "Not Found"})


@pytest.fixture
def gitea_server(tmp_path: Path) -> Iterator[tuple[GiteaContractFake, GitHttpServer]]:
    fake = GiteaContractFake(tmp_path / "gitea", "gitea-admin", "pw", "http://gitea-http.gitea.svc:3000")
    (tmp_path / "gitea").mkdir()
    with GitHttpServer(fake) as server:
        yield fake, server


def test_the_repository_moves_into_gitea_and_the_root_app_follows(
    kube: KubeEmulator, tmp_path: Path, gitea_server: tuple[GiteaContractFake, GitHttpServer]
) -> None:
    fake, server = gitea_server
    helm = FakeHelm()
    cluster_url = "http://gitea-http.gitea.svc:3000"
    ctx = _context(kube, tmp_path, helm, gitea=job.GiteaTarget(url=server.url(), cluster_url=cluster_url))
    steps = [s for s in job.STEPS if s[0] not in ("wait", "gitea")]
    job.run(ctx, steps)
    _filled_by_the_controller(kube, "generated-in-the-cluster")
    # the generated admin credential is what Gitea was deployed with; the fake accepts it
    fake.password = job._read_secret(ctx, "gitea", "gitea-admin")["password"]
    fake.git.auth = (fake.username, fake.password)

    _healthy(kube, "gitea")
    changes = job.step_gitea(ctx)
    assert "Gitea organisation homelab created" in changes
    assert "Gitea OAuth2 application for Woodpecker created" in changes
    oauth = kube.objects("v1/secrets", "woodpecker")["woodpecker/woodpecker-gitea"]["data"]
    assert base64.b64decode(oauth["WOODPECKER_GITEA_SECRET"]).decode() == "secret-1"
    assert fake.oauth_apps[1]["redirect_uris"] == ["https://ci.home.arpa/authorize"]
    assert "Gitea repository homelab/gitops created" in changes
    assert "GitOps repository pushed to Gitea" in changes
    pushed = subprocess.run(
        ["git", "-C", str(tmp_path / "gitea" / "homelab" / "gitops.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == SeedRepo(ctx.state).head()
    root = kube.objects("argoproj.io/v1alpha1/applications")["argocd/root"]
    assert root["spec"]["source"]["repoURL"] == f"{cluster_url}/homelab/gitops.git"
    for appset in kube.objects("argoproj.io/v1alpha1/applicationsets").values():
        assert appset["spec"]["generators"][0]["git"]["repoURL"] == f"{cluster_url}/homelab/gitops.git"
    secret = kube.objects("v1/secrets", "argocd")["argocd/homelab-gitops-repo"]
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    # the secrets controller keeps it in step with gitea-admin, whose copy-to names it (gitops/system/secrets)
    assert secret["metadata"]["annotations"]["secrets.homelab.dev/copy-of"] == "gitea/gitea-admin"

    fake.requests.clear()
    assert job.step_gitea(ctx) == []
    assert [m for m, _ in fake.requests] == ["GET", "GET", "GET"], "a rerun only reads"
    assert job.run(ctx, steps) == [], "after the switch, the root stays on Gitea"
    ctx.gitea = None
    assert job.run(ctx, steps) == [], "even where Gitea cannot be reached, the root is never switched back"
    ctx.gitea = job.GiteaTarget(url=server.url(), cluster_url=cluster_url)

    # a changed site file reaches Gitea through the repository step
    ctx.site = ctx.site.model_copy(update={"timezone": "Asia/Tokyo"})
    assert job.step_repository(ctx) == ["GitOps repository committed", "GitOps repository pushed to Gitea"]
    pushed = subprocess.run(
        ["git", "-C", str(tmp_path / "gitea" / "homelab" / "gitops.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == SeedRepo(ctx.state).head()

    # our copy of Woodpecker's OAuth secret is lost: Gitea cannot show it again, so the app is replaced
    kube_api = ctx.kube.client
    import kubernetes.client

    kubernetes.client.CoreV1Api(kube_api).delete_namespaced_secret("woodpecker-gitea", "woodpecker")
    fake.requests.clear()
    assert "Gitea OAuth2 application for Woodpecker created" in job.step_gitea(ctx)
    assert ("DELETE", "/api/v1/user/applications/oauth2/1") in fake.requests
    assert list(fake.oauth_apps) == [2]


def test_a_wrong_gitea_credential_is_a_clear_error(
    kube: KubeEmulator, tmp_path: Path, gitea_server: tuple[GiteaContractFake, GitHttpServer]
) -> None:
    _, server = gitea_server
    ctx = _context(kube, tmp_path, FakeHelm(), gitea=job.GiteaTarget(url=server.url(), cluster_url="http://g"))
    job.run(ctx, [s for s in job.STEPS if s[0] in ("namespaces", "secrets")])
    _filled_by_the_controller(kube, "not-what-gitea-has")
    _healthy(kube, "gitea")
    with pytest.raises(Exception, match=r"GET /user \(check the admin credential\): HTTP 401"):
        job.step_gitea(ctx)


def test_missing_token_file_names_the_secret(kube: KubeEmulator, tmp_path: Path) -> None:
    ctx = _context(kube, tmp_path, FakeHelm())
    data = ctx.site.model_dump(mode="json")
    data["domain"] = "lab.example.com"
    data["certificates"] = {"acme": {"email": "a@example.com", "token": {"file": str(tmp_path / "absent")}}}
    from homelab_common.site import parse_site

    ctx.site = parse_site(data)
    job.step_namespaces(ctx)
    with pytest.raises(job.BootstrapError, match=r"secret cert-manager/cloudflare-api-token: cannot read .*absent"):
        job.step_secrets(ctx)


def test_alerting_ntfy_becomes_the_homepages_secret_with_the_token_from_its_reference(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    from homelab_common.site import parse_site

    ctx = _context(kube, tmp_path, FakeHelm())
    data = ctx.site.model_dump(mode="json")
    data["alerting"] = {"ntfy": {"topic": "homelab-q8x2", "token": {"env": "NTFY_TOKEN"}}}
    ctx.site = parse_site(data)
    ctx.environ = {"NTFY_TOKEN": "tk_abc"}
    job.step_namespaces(ctx)
    assert "secret homepage/homepage-ntfy set from the site file's alerting.ntfy" in job.step_secrets(ctx)
    stored = kube.objects("v1/secrets", "homepage")["homepage/homepage-ntfy"]["data"]
    assert {k: base64.b64decode(v).decode() for k, v in stored.items()} == {
        "HOMELAB_HOMEPAGE_NTFY_URL": "https://ntfy.sh",
        "HOMELAB_HOMEPAGE_NTFY_TOPIC": "homelab-q8x2",
        "HOMELAB_HOMEPAGE_NTFY_TOKEN": "tk_abc",
    }
    assert "secret homepage/homepage-ntfy set from the site file's alerting.ntfy" not in job.step_secrets(ctx)
    ctx.environ = {}
    with pytest.raises(job.BootstrapError, match=r"secret homepage/homepage-ntfy: .*NTFY_TOKEN"):
        job.step_secrets(ctx)


def test_the_registry_pull_endpoints_htpasswd_comes_from_the_nodes_credential_and_is_never_printed(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    ctx = _context(kube, tmp_path, FakeHelm())
    said: list[str] = []
    ctx.say = said.append
    steps = [s for s in job.STEPS if s[0] in ("namespaces", "secrets")]
    changes = job.run(ctx, steps)
    assert "secret registry/registry-nodes set from the nodes' registry credential" in changes
    credential = registry.node_credential(ctx.state)  # what `task up` gave autoinstall for registries.yaml
    stored = kube.objects("v1/secrets", "registry")["registry/registry-nodes"]["data"]
    data = {k: base64.b64decode(v).decode() for k, v in stored.items()}
    assert data["username"] == credential.username
    assert data["password"] == credential.password
    (line,) = data["auth"].splitlines()  # the nodes' user only: the push credential is not in this file
    assert registry.matches(data, credential)
    assert line.startswith(f"{credential.username}:$2y$")
    assert not any(credential.password in s or line in s for s in said)
    # a rerun leaves it (no new salt), a wrong hash is repaired, and a Job without the state file keeps it
    assert job.step_secrets(ctx) == []
    Kube(kube.api_client()).apply(
        job._secret("registry", "registry-nodes", data | {"auth": line.split("$2y$")[0] + "$2y$10$broken\n"})
    )
    assert job.step_secrets(ctx) == ["secret registry/registry-nodes set from the nodes' registry credential"]
    (ctx.state / registry.FILE).unlink()
    assert job.step_secrets(ctx) == []
    assert not (ctx.state / registry.FILE).exists(), "no new credential minted over the one the nodes hold"
    (ctx.state / registry.FILE).write_text("{}")
    with pytest.raises(
        job.BootstrapError, match=r"secret registry/registry-nodes: .*registry-nodes.json: no 'username'"
    ):
        job.step_secrets(ctx)


def test_alerting_email_password_becomes_alertmanagers_secret(kube: KubeEmulator, tmp_path: Path) -> None:
    from homelab_common.site import parse_site

    ctx = _context(kube, tmp_path, FakeHelm())
    data = ctx.site.model_dump(mode="json")
    email = {"to": "me@example.com", "from": "lab@example.com", "smarthost": "smtp.example.com:587"}
    data["alerting"] = {"email": email | {"username": "lab", "password": {"env": "SMTP_PASSWORD"}}}
    ctx.site = parse_site(data)
    ctx.environ = {"SMTP_PASSWORD": "s3cret"}
    job.step_namespaces(ctx)
    assert "secret monitoring/alertmanager-smtp set from the site file's reference" in job.step_secrets(ctx)
    stored = kube.objects("v1/secrets", "monitoring")["monitoring/alertmanager-smtp"]["data"]
    assert {k: base64.b64decode(v).decode() for k, v in stored.items()} == {"password": "s3cret"}
    ctx.environ = {}
    with pytest.raises(job.BootstrapError, match=r"secret monitoring/alertmanager-smtp: .*SMTP_PASSWORD"):
        job.step_secrets(ctx)


def test_the_gitea_login_is_waited_for_until_the_controller_fills_it(kube: KubeEmulator, tmp_path: Path) -> None:
    ctx = _context(kube, tmp_path, FakeHelm())
    job.step_namespaces(ctx)
    ctx.wait_timeout = 0.3
    with pytest.raises(job.BootstrapError, match=r"secret gitea/gitea-admin has no password .* the secrets controller"):
        job._read_secret(ctx, "gitea", "gitea-admin")
    ctx.wait_timeout = 30
    timer = threading.Timer(0.3, _filled_by_the_controller, (kube, "filled-later"))
    timer.start()
    assert job._read_secret(ctx, "gitea", "gitea-admin")["password"] == "filled-later"
    timer.join()


def test_the_printed_logins_follow_the_declared_credentials() -> None:
    site = load_site(EXAMPLE)
    logins = job.admin_logins(REPO, site)
    assert ("gitea", "gitea-admin", "password") in logins
    assert ("monitoring", "grafana-admin", "admin-password") in logins
    assert ("registry", "registry-admin", "password") in logins
    assert all(name != "woodpecker-agent-secret" for _, name, _ in logins)  # not a login
    off = site.model_copy(update={"apps": site.apps.model_copy(update={"monitoring": False})})
    assert all(name != "grafana-admin" for _, name, _ in job.admin_logins(REPO, off))


def test_apps_stage_is_done_only_once_the_repository_is_in_gitea_and_every_app_is_healthy(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    ctx = _context(kube, tmp_path, FakeHelm())
    job.run(ctx, [s for s in job.STEPS if s[0] not in ("wait", "gitea")])
    cluster = "http://gitea-http.gitea.svc:3000"
    for name in job.expected_apps(ctx):
        _healthy(kube, name)
    assert job.apps_done(ctx, cluster) is None, "still on the controller's repository"
    job.apply_root(ctx, job.gitea_repo_url(cluster))
    _healthy(kube, "root")
    assert job.apps_done(ctx, cluster) == "the repository is in Gitea and every Application is Synced and Healthy"
    app = Kube(kube.api_client()).get(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "loki", "namespace": "argocd"},
        }
    )
    assert app is not None
    Kube(kube.api_client()).apply(app | {"status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Healthy"}}})
    assert job.apps_done(ctx, cluster) is None


def test_the_job_command_bootstraps_a_cluster_from_its_kubeconfig(kube: KubeEmulator, tmp_path: Path) -> None:
    """`homelab-bootstrap job` (what charts/bootstrap runs) end to end against the emulator, twice."""
    import os
    import sys

    import yaml

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "nobody"}}],
                "current-context": "emulator",
                "users": [{"name": "nobody", "user": {}}],
            }
        )
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOMELAB_SOURCE": str(REPO)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    command = [str(Path(sys.executable).parent / "homelab-bootstrap"), "job", "--site", str(EXAMPLE)]
    command += ["--state", str(tmp_path / "state"), "--repo-url", "http://192.168.1.5:8418/homelab.git"]
    command += ["--poll-seconds", "0.2"]
    site = load_site(EXAMPLE)
    names = {"root"} | {a.name for a in gitops.discover_apps(REPO) if gitops.enabled(a, site)}
    with FakeArgoCD(Kube(kube.api_client()), names):
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "ApplicationSet system created" in first.stdout, first.stdout
        before = _versions(kube)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "bootstrap: namespaces: already done" in second.stdout
    assert "bootstrap: root: already done" in second.stdout
    assert _versions(kube) == before
