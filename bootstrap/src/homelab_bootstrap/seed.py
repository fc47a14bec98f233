"""The GitOps repository Argo CD reads: built from this checkout plus the site's generated values.

It holds ``gitops/`` (with every ``values-site.yaml`` generated), ``charts/`` (our services' charts, which the
gitops wrappers reference as ``file://``) and the site file itself (it holds no secrets: they are referenced by file
or environment variable). It lives under the state directory: a work tree and a bare copy the controller serves.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from homelab_bootstrap import gitops
from homelab_common.site import Site

REPO_NAME = "homelab.git"
BRANCH = "main"
_IGNORE = shutil.ignore_patterns("values-site.yaml", "*.tgz", "__pycache__", ".git")


def vendor_local_dependencies(root: Path) -> list[Path]:
    """Copy each chart's ``file://`` dependencies into its ``charts/`` directory (unpacked).

    ``helm dependency build`` (what Argo CD runs on an app folder) packages a ``file://`` dependency as it is on
    disk and does not build that chart's own dependencies: gitops/apps/pxe → charts/pxe → charts/library would
    arrive without the library. Vendored once here, every level is complete. Returns the directories written.
    """
    written = []
    for chart_yaml in sorted((root / "charts").glob("*/Chart.yaml")):
        chart = chart_yaml.parent
        meta = yaml.safe_load(chart_yaml.read_text(encoding="utf-8")) or {}
        for dep in meta.get("dependencies") or []:
            repository = str(dep.get("repository", ""))
            if not repository.startswith("file://"):
                continue
            source = (chart / repository.removeprefix("file://")).resolve()
            target = chart / "charts" / str(dep["name"])
            shutil.rmtree(target, ignore_errors=True)
            for packaged in (chart / "charts").glob(f"{dep['name']}-*.tgz"):
                packaged.unlink()
            shutil.copytree(source, target, ignore=_IGNORE)
            written.append(target)
    return written


class GitError(RuntimeError):
    """A git command failed; the message carries its stderr."""


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=full_env, check=False)
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def auth_env(username: str, password: str) -> dict[str, str]:
    """Credentials for one git command through the environment (never on the command line, where ps shows it)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
    }


class SeedRepo:
    def __init__(self, state: Path) -> None:
        self.work = state / "gitops-work"
        self.served = state / "git"
        self.bare = self.served / REPO_NAME

    def _init(self) -> None:
        if not (self.work / ".git").is_dir():
            self.work.mkdir(parents=True, exist_ok=True)
            git("init", "-q", "-b", BRANCH, cwd=self.work)
            git("config", "user.name", "homelab-bootstrap", cwd=self.work)
            git("config", "user.email", "bootstrap@homelab.invalid", cwd=self.work)
        if not self.bare.is_dir():
            self.served.mkdir(parents=True, exist_ok=True)
            git("init", "-q", "--bare", "-b", BRANCH, str(self.bare), cwd=self.served)

    def update(self, source: Path, site: Site, site_text: str) -> bool:
        """Bring the repository up to date with the checkout and site; True when a new commit was made."""
        self._init()
        for part in ("gitops", "charts", "docs"):  # docs/: the alert runbooks the rules link to
            shutil.rmtree(self.work / part, ignore_errors=True)
            if (source / part).is_dir():
                shutil.copytree(source / part, self.work / part, ignore=_IGNORE)
        vendor_local_dependencies(self.work)
        (self.work / "site.yaml").write_text(site_text, encoding="utf-8")
        # helm dependency build leaves packaged charts beside the wrappers: Argo CD rebuilds them itself
        (self.work / ".gitignore").write_text("gitops/**/charts/\nChart.lock\n", encoding="utf-8")
        gitops.write_values(self.work, site)
        git("add", "-A", cwd=self.work)
        changed = bool(git("status", "--porcelain", cwd=self.work))
        if changed:
            git("commit", "-q", "-m", "homelab: GitOps repository from the site file", cwd=self.work)
        if changed or self.head() != self.served_head():
            git("push", "-q", str(self.bare), f"{BRANCH}:{BRANCH}", cwd=self.work)
        return changed

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def served_head(self) -> str | None:
        try:
            return git("rev-parse", BRANCH, cwd=self.bare)
        except GitError:
            return None

    def remote_head(self, url: str, username: str, password: str) -> str | None:
        out = git("ls-remote", url, f"refs/heads/{BRANCH}", cwd=self.work, env=auth_env(username, password))
        return out.split()[0] if out else None

    def push(self, url: str, username: str, password: str) -> bool:
        """Push to ``url`` when it lacks our head; True when something was pushed."""
        if self.remote_head(url, username, password) == self.head():
            return False
        git("push", "-q", url, f"{BRANCH}:{BRANCH}", cwd=self.work, env=auth_env(username, password))
        return True
