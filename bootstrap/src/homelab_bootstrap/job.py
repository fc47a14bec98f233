"""The one-shot bootstrap: namespaces → site-file secrets → the GitOps repository → Argo CD → root ApplicationSets, then
(once Gitea runs) the repository moves into Gitea and the root app follows it → wait for every app.

The repository is built before Argo CD is installed because Argo CD's own chart and values come from it: the
release helm installs is the one Argo CD then manages.

Every step reads the cluster (or the repository, or Gitea) before acting, so a rerun writes nothing and a run that
failed half-way resumes where it stopped. The same code runs on the controller (`task up`) and in the cluster as a
Job (charts/bootstrap).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from homelab_bootstrap import gitops, registry
from homelab_bootstrap.gitea import Gitea
from homelab_bootstrap.kube import Kube
from homelab_bootstrap.seed import SeedRepo
from homelab_common.site import Site

GITEA_ORG = "homelab"
MITTWALD = "secret-generator.v1.mittwald.de/"
#: Gitea's in-cluster URL (the gitea chart's HTTP Service in the gitea namespace): what Argo CD clones from
GITEA_CLUSTER_URL = "http://gitea-http.gitea.svc:3000"
GITEA_REPO = "gitops"
ARGOCD_RELEASE = "argocd"


class Runner(Protocol):
    """Runs a command; returns (exit code, stdout, stderr). The real one is :func:`run_command`."""

    def __call__(self, args: Sequence[str]) -> tuple[int, str, str]: ...


def run_command(args: Sequence[str]) -> tuple[int, str, str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class BootstrapError(RuntimeError):
    """A step failed; the message says which and what to do."""


@dataclass
class GiteaTarget:
    """Where Gitea's API and git endpoint are reachable from here, and the in-cluster URL Argo CD uses."""

    url: str
    cluster_url: str


@dataclass
class Context:
    site: Site
    site_text: str
    source: Path  # the checkout: gitops/, charts/
    state: Path  # .cache/homelab or the Job's volume
    kube: Kube
    helm: str = "helm"
    run: Runner = run_command
    repo_url: str | None = None  # where Argo CD clones the seed repository (the controller's server)
    gitea: GiteaTarget | None = None
    environ: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print
    wait_timeout: float = 3600.0
    poll: float = 10.0


def _secret(namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {"app.kubernetes.io/part-of": "homelab"},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _read_secret(ctx: Context, namespace: str, name: str, key: str = "password") -> dict[str, str]:
    """A Secret the secrets controller fills (system tier): wait for ``key`` rather than fail while it is empty."""
    deadline = time.monotonic() + ctx.wait_timeout
    probe = {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": namespace, "name": name}}
    while True:
        obj = ctx.kube.get(probe)
        data = {k: base64.b64decode(v).decode() for k, v in ((obj or {}).get("data") or {}).items()}
        if data.get(key):
            return data
        if time.monotonic() > deadline:
            raise BootstrapError(
                f"secret {namespace}/{name} has no {key} after {ctx.wait_timeout:.0f}s: the secrets controller "
                f"(Argo CD app secrets, system tier) fills it; see `kubectl -n {namespace} describe secret {name}` "
                "and `kubectl -n secrets logs deploy/secrets`"
            )
        time.sleep(ctx.poll)


def admin_logins(source: Path, site: Site) -> list[tuple[str, str, str]]:
    """(namespace, Secret, key) of each generated admin password the site has, from gitops/system/secrets."""
    values = yaml.safe_load((source / "gitops" / "system" / "secrets" / "values.yaml").read_text(encoding="utf-8"))
    toggles = site.apps.model_dump()
    logins = []
    for name, item in sorted((values.get("credentials") or {}).items()):
        if not toggles.get(item.get("app"), True):
            continue
        notes = item.get("annotations") or {}
        basic = "basic-auth" in (notes.get("secrets.homelab.dev/type"), notes.get(f"{MITTWALD}type"))
        keys = ["password"] if basic else str(notes.get("secrets.homelab.dev/generate", "")).split(",")
        key = next((k.strip() for k in keys if "password" in k), None)
        if key:
            logins.append((str(item["namespace"]), name, key))
    return logins


# ------------------------------------------------------------------------------------------------ steps


def step_namespaces(ctx: Context) -> list[str]:
    names = [
        gitops.ARGOCD_NAMESPACE,
        "cert-manager",
        "monitoring",
        "gitea",
        "registry",
        "woodpecker",
        "cloudflared",
        "dns-public",  # the Cloudflare API token's Secret lives there
        "backup",
        "homepage",  # the ntfy Secret (alert delivery) lives there
    ]
    apps = {a.name: a for a in gitops.discover_apps(ctx.source)}
    wanted = [n for n in names if n == gitops.ARGOCD_NAMESPACE or (n in apps and gitops.enabled(apps[n], ctx.site))]
    changes = []
    for name in wanted:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if ctx.kube.apply(ns, create_only=True) == "created":
            changes.append(f"namespace {name} created")
    return changes


def step_secrets(ctx: Context) -> list[str]:
    """Only the Secrets that come from outside the cluster (the site file's token references).

    Generated credentials are not made here: they are annotated Secrets in gitops/system/secrets, filled in the
    cluster by the secrets controller (system tier, before the apps that need them), which also rotates them.
    """
    changes = []
    refs = []
    if ctx.site.certificates.acme is not None:
        refs.append(("cert-manager", "cloudflare-api-token", "api-token", ctx.site.certificates.acme.token))
    if ctx.site.exposure.cloudflare_tunnel is not None:
        refs.append(("cloudflared", "cloudflared-token", "token", ctx.site.exposure.cloudflare_tunnel.token))
        if ctx.site.exposure.cloudflare_tunnel.routes is not None:
            token = ctx.site.exposure.cloudflare_tunnel.routes.api_token
            refs.append(("dns-public", "dns-cloudflare-api-token", "token", token))
    email = ctx.site.alerting.email
    if email is not None and email.password is not None and ctx.site.apps.monitoring:
        # mounted into Alertmanager (alertmanagerSpec.secrets), read as auth_password_file: never in its config
        refs.append(("monitoring", gitops.SMTP_SECRET, gitops.SMTP_PASSWORD_KEY, email.password))
    changes += _ntfy_secret(ctx)
    changes += _registry_nodes_secret(ctx)
    for namespace, name, key, ref in refs:
        try:
            value = ref.read(ctx.environ or None)
        except LookupError as exc:
            raise BootstrapError(f"secret {namespace}/{name}: {exc}") from None
        if ctx.kube.apply(_secret(namespace, name, {key: value})) != "unchanged":
            changes.append(f"secret {namespace}/{name} set from the site file's reference")
    if ctx.site.backup.enabled and ctx.site.backup.repositories:
        data = {BACKUP_SECRET_KEY: backup_repositories_json(ctx.site, ctx.environ or None)}
        if ctx.kube.apply(_secret("backup", BACKUP_SECRET, data)) != "unchanged":
            changes.append(f"secret backup/{BACKUP_SECRET} set from the site file's backup.repositories")
    return changes


def _registry_nodes_secret(ctx: Context) -> list[str]:
    """Secret registry/registry-nodes: the pull endpoint's htpasswd (the nodes' user only) from the credential in
    ``<state>/registry-nodes.json`` (homelab_bootstrap.registry), the one the nodes' registries.yaml holds.

    Rewritten only when it no longer matches the state file (a new bcrypt salt on every run would be churn). With
    no state file but a Secret in place (a Job on a fresh volume), the Secret is left alone: a new credential
    would lock out the nodes installed with the old one. The credential is never printed.
    """
    if not ctx.site.apps.registry:
        return []
    probe = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": registry.NAMESPACE, "name": registry.SECRET_NAME},
    }
    existing = ctx.kube.get(probe)
    if existing is not None and not (ctx.state / registry.FILE).is_file():
        return []
    try:
        credential = registry.node_credential(ctx.state)
    except ValueError as exc:
        raise BootstrapError(f"secret {registry.NAMESPACE}/{registry.SECRET_NAME}: {exc}") from None
    data = {k: base64.b64decode(v).decode() for k, v in ((existing or {}).get("data") or {}).items()}
    if registry.matches(data, credential):
        return []
    ctx.kube.apply(
        _secret(registry.NAMESPACE, registry.SECRET_NAME, registry.secret_manifest(credential)["stringData"])
    )
    return [f"secret {registry.NAMESPACE}/{registry.SECRET_NAME} set from the nodes' registry credential"]


def _ntfy_secret(ctx: Context) -> list[str]:
    """The homepage's ntfy settings (its chart reads the optional Secret homepage-ntfy as environment)."""
    ntfy = ctx.site.alerting.ntfy
    if ntfy is None or not ctx.site.apps.homepage:
        return []
    data = {"HOMELAB_HOMEPAGE_NTFY_URL": ntfy.url, "HOMELAB_HOMEPAGE_NTFY_TOPIC": ntfy.topic}
    if ntfy.token is not None:
        try:
            data["HOMELAB_HOMEPAGE_NTFY_TOKEN"] = ntfy.token.read(ctx.environ or None)
        except LookupError as exc:
            raise BootstrapError(f"secret homepage/homepage-ntfy: {exc}") from None
    if ctx.kube.apply(_secret("homepage", "homepage-ntfy", data)) == "unchanged":
        return []
    return ["secret homepage/homepage-ntfy set from the site file's alerting.ntfy"]


BACKUP_SECRET = "homelab-backup-repositories"  # noqa: S105 (a Secret's name)
BACKUP_SECRET_KEY = "repositories.json"  # noqa: S105 (a key name)


def backup_repositories_json(site: Site, environ: dict[str, str] | None = None) -> str:
    """The backup service's repositories (HOMELAB_BACKUP_REPOSITORIES), passwords and credentials read now."""
    repos = []
    for index, repo in enumerate(site.backup.repositories):
        where = f"backup.repositories[{index}]"
        try:
            password = repo.password.read(environ)
            env = {name: ref.read(environ) for name, ref in sorted(repo.env.items())}
        except LookupError as exc:
            raise BootstrapError(f"{where} ({repo.name}): {exc}") from None
        repos.append(
            {"name": repo.name, "url": repo.url, "offsite": repo.offsite, "init": repo.init, "password": password}
            | ({"env": env} if env else {})
        )
    return json.dumps(repos, sort_keys=True)


def _helm(ctx: Context, *args: str) -> str:
    code, out, err = ctx.run([ctx.helm, *args])
    if code != 0:
        raise BootstrapError(f"helm {args[0]} failed: {err.strip() or out.strip()}")
    return out


def argocd_chart(ctx: Context) -> tuple[Path, Path]:
    """The Argo CD wrapper chart in the seed repository and its generated values file."""
    chart = SeedRepo(ctx.state).work / "gitops" / "system" / "argocd"
    return chart, chart / gitops.VALUES_FILE


def step_argocd(ctx: Context) -> list[str]:
    """helm upgrade --install the same wrapper chart Argo CD later manages (and so adopts), unless it is there."""
    chart, values = argocd_chart(ctx)
    wanted = yaml.safe_load(values.read_text(encoding="utf-8"))
    code, out, _ = ctx.run([ctx.helm, "status", ARGOCD_RELEASE, "-n", gitops.ARGOCD_NAMESPACE, "-o", "json"])
    if code == 0 and json.loads(out).get("info", {}).get("status") == "deployed":
        current = json.loads(
            _helm(ctx, "get", "values", ARGOCD_RELEASE, "-n", gitops.ARGOCD_NAMESPACE, "-o", "json") or "{}"
        )
        if current == wanted:
            return []
    ctx.say("bootstrap: argocd: installing with helm and waiting for it to be ready (up to 15 minutes)")
    _helm(ctx, "dependency", "build", str(chart))
    _helm(
        ctx,
        "upgrade",
        "--install",
        ARGOCD_RELEASE,
        str(chart),
        "--namespace",
        gitops.ARGOCD_NAMESPACE,
        "--values",
        str(values),
        "--wait",
        "--timeout",
        "15m",
    )
    return ["argocd installed with helm"]


def _root_application(ctx: Context) -> dict[str, Any] | None:
    return ctx.kube.get(gitops.root_application({"repoURL": "", "revision": "main"}))


def current_repo_url(ctx: Context) -> str | None:
    root = _root_application(ctx)
    return None if root is None else str(root["spec"]["source"]["repoURL"])


def step_repository(ctx: Context) -> list[str]:
    """Bring the seed repository up to date (served by the controller, or pushed to Gitea once it moved there)."""
    seed = SeedRepo(ctx.state)
    changed = seed.update(ctx.source, ctx.site, ctx.site_text)
    changes = ["GitOps repository committed"] if changed else []
    if ctx.gitea is not None and on_gitea(ctx):
        user = _read_secret(ctx, "gitea", "gitea-admin")
        if seed.push(gitea_repo_url(ctx.gitea.url), user["username"], user["password"]):
            changes.append("GitOps repository pushed to Gitea")
    return changes


def _target_url(ctx: Context) -> str:
    current = current_repo_url(ctx)
    if current is not None and on_gitea(ctx):
        return current  # moved into Gitea: never back to the controller's copy
    if ctx.repo_url is None:
        if current is None:
            raise BootstrapError("no GitOps repository URL: serve it from the controller (`task up`) first")
        return current
    return ctx.repo_url


def apply_root(ctx: Context, repo_url: str) -> list[str]:
    values = gitops.root_values(ctx.source, ctx.site, repo_url)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(values, handle)
    try:
        rendered = _helm(
            ctx,
            "template",
            "root",
            str(ctx.source / gitops.ROOT_PATH),
            "--namespace",
            gitops.ARGOCD_NAMESPACE,
            "--values",
            handle.name,
        )
    finally:
        Path(handle.name).unlink()
    changes = []
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    for obj in [*objects, gitops.root_application(values)]:
        outcome = ctx.kube.apply(obj)
        if outcome != "unchanged":
            changes.append(f"{obj['kind']} {obj['metadata']['name']} {outcome}")
    return changes


def step_root(ctx: Context) -> list[str]:
    return apply_root(ctx, _target_url(ctx))


def applications(ctx: Context) -> list[dict[str, Any]]:
    return ctx.kube.list("argoproj.io/v1alpha1", "Application", gitops.ARGOCD_NAMESPACE)


def expected_apps(ctx: Context) -> set[str]:
    return {"root"} | {a.name for a in gitops.discover_apps(ctx.source) if gitops.enabled(a, ctx.site)}


def app_states(ctx: Context) -> dict[str, tuple[str, str]]:
    """Each Application's (sync, health) status."""
    seen = {}
    for app in applications(ctx):
        status = app.get("status") or {}
        sync = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        seen[app["metadata"]["name"]] = (str(sync), str(health))
    return seen


def wait_apps(ctx: Context, expected: set[str]) -> None:
    """Wait until the ``expected`` Applications are Synced and Healthy, printing what is pending when it changes."""
    deadline = time.monotonic() + ctx.wait_timeout
    last = ""
    while True:
        seen = app_states(ctx)
        pending = sorted(n for n in expected if seen.get(n) != ("Synced", "Healthy"))
        ready = len(expected) - len(pending)
        waiting = ", ".join(f"{n} ({'/'.join(seen.get(n, ('absent',)))})" for n in pending)
        line = f"apps: {ready}/{len(expected)} Synced and Healthy" + (f"; waiting for {waiting}" if pending else "")
        if line != last:
            ctx.say(line)
            last = line
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BootstrapError(f"apps not Synced and Healthy after {ctx.wait_timeout:.0f}s: {', '.join(pending)}")
        time.sleep(ctx.poll)


def step_wait(ctx: Context) -> list[str]:
    """Every Application Synced and Healthy."""
    wait_apps(ctx, expected_apps(ctx))
    return []


def apps_done(ctx: Context, gitea_cluster_url: str) -> str | None:
    """Why the apps stage has nothing to do (the repository is in Gitea, every app Synced and Healthy), or None."""
    if current_repo_url(ctx) != gitea_repo_url(gitea_cluster_url):
        return None
    seen = app_states(ctx)
    if all(seen.get(n) == ("Synced", "Healthy") for n in expected_apps(ctx)):
        return "the repository is in Gitea and every Application is Synced and Healthy"
    return None


def gitea_repo_url(base: str) -> str:
    return f"{base.rstrip('/')}/{GITEA_ORG}/{GITEA_REPO}.git"


def gitea_clone_url(ctx: Context) -> str:
    return gitea_repo_url(ctx.gitea.cluster_url if ctx.gitea is not None else GITEA_CLUSTER_URL)


def on_gitea(ctx: Context) -> bool:
    """Has the root Application been switched to the repository in Gitea?"""
    return current_repo_url(ctx) == gitea_clone_url(ctx)


def step_gitea(ctx: Context) -> list[str]:
    """Move the GitOps repository into Gitea: org + repo via the API, push, Argo CD credentials, switch the root."""
    if ctx.gitea is None:
        return []
    # Woodpecker (apps tier) cannot start before its Gitea login exists: wait for Gitea alone, not for everything
    wait_apps(ctx, {"gitea"})
    user = _read_secret(ctx, "gitea", "gitea-admin")
    api = Gitea(ctx.gitea.url, user["username"], user["password"])
    api.whoami()
    changes = []
    if api.ensure_org(GITEA_ORG):
        changes.append(f"Gitea organisation {GITEA_ORG} created")
    _, created = api.ensure_repo(GITEA_ORG, GITEA_REPO)
    if created:
        changes.append(f"Gitea repository {GITEA_ORG}/{GITEA_REPO} created")
    if SeedRepo(ctx.state).push(gitea_repo_url(ctx.gitea.url), user["username"], user["password"]):
        changes.append("GitOps repository pushed to Gitea")
    if ctx.site.apps.woodpecker:
        changes += _woodpecker_oauth(ctx, api)
    clone_url = gitea_clone_url(ctx)
    repo_secret = _secret(
        gitops.ARGOCD_NAMESPACE,
        "homelab-gitops-repo",
        {"type": "git", "url": clone_url, "username": user["username"], "password": user["password"]},
        labels={"argocd.argoproj.io/secret-type": "repository", "app.kubernetes.io/part-of": "homelab"},
    )
    # the secrets controller keeps username/password in step when gitea-admin rotates (its copy-to names this one)
    repo_secret["metadata"]["annotations"] = {"secrets.homelab.dev/copy-of": "gitea/gitea-admin"}
    if ctx.kube.apply(repo_secret) != "unchanged":
        changes.append("Argo CD given the Gitea repository credential")
    changes += apply_root(ctx, clone_url)
    return changes


def _woodpecker_oauth(ctx: Context, api: Gitea) -> list[str]:
    """Woodpecker logs in through Gitea: an OAuth2 application in Gitea, its credential as a Secret Woodpecker reads."""
    probe = {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "woodpecker", "name": "woodpecker-gitea"}}
    if ctx.kube.get(probe) is not None:
        return []
    redirect = f"https://{gitops.hostname(ctx.site, 'woodpecker')}/authorize"
    client_id, client_secret = api.recreate_oauth_app("woodpecker", redirect)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "woodpecker"}}
    ctx.kube.apply(ns, create_only=True)
    data = {"WOODPECKER_GITEA_CLIENT": client_id, "WOODPECKER_GITEA_SECRET": client_secret}
    ctx.kube.apply(_secret("woodpecker", "woodpecker-gitea", data), create_only=True)
    return ["Gitea OAuth2 application for Woodpecker created"]


Step = Callable[[Context], list[str]]
STEPS: list[tuple[str, Step]] = [
    ("namespaces", step_namespaces),
    ("secrets", step_secrets),
    ("repository", step_repository),
    ("argocd", step_argocd),
    ("root", step_root),
    ("gitea", step_gitea),
    ("wait", step_wait),
]


def run(ctx: Context, steps: list[tuple[str, Step]] | None = None) -> list[str]:
    """Run every step in order; returns all changes made ([] on a rerun against a bootstrapped cluster)."""
    changes: list[str] = []
    for name, step in steps or STEPS:
        started = time.monotonic()
        done = step(ctx)
        took = time.monotonic() - started
        ctx.say(f"bootstrap: {name}: " + ("; ".join(done) if done else "already done") + f" ({took:.1f}s)")
        changes += done
    return changes
