"""The smart-HTTP git server with real git clients: large (chunked) pushes, authentication, read-only mode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from homelab_bootstrap.gitserve import GitHttpBackend, GitHttpServer
from homelab_bootstrap.seed import auth_env


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=full, check=False)


def _repo_with_big_file(path: Path) -> None:
    path.mkdir()
    _git("init", "-q", "-b", "main", cwd=path)
    (path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # incompressible: the pack exceeds postBuffer
    _git("add", "-A", cwd=path)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "big", cwd=path)


def test_a_push_larger_than_gits_post_buffer_arrives_chunked_and_complete(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _git("init", "-q", "--bare", "-b", "main", str(served / "r.git"), cwd=tmp_path)
    _repo_with_big_file(tmp_path / "work")
    app = GitHttpBackend(served, receive_pack=True, auth=("u", "p"))
    with GitHttpServer(app) as server:
        url = f"{server.url()}/r.git"
        denied = _git("push", "-q", url, "main", cwd=tmp_path / "work", env=auth_env("u", "wrong"))
        assert denied.returncode != 0
        pushed = _git("push", "-q", url, "main", cwd=tmp_path / "work", env=auth_env("u", "p"))
        assert pushed.returncode == 0, pushed.stderr
        cloned = _git("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path, env=auth_env("u", "p"))
        assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "clone" / "big.bin").read_bytes() == (tmp_path / "work" / "big.bin").read_bytes()


def test_the_read_only_server_refuses_pushes_but_serves_clones(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _repo_with_big_file(tmp_path / "work")
    _git("clone", "-q", "--bare", str(tmp_path / "work"), str(served / "r.git"), cwd=tmp_path)
    with GitHttpServer(GitHttpBackend(served)) as server:
        url = f"{server.url()}/r.git"
        assert _git("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path).returncode == 0
        refused = _git("push", url, "main:other", cwd=tmp_path / "work")
    assert refused.returncode != 0
    assert "403" in refused.stderr or "read-only" in refused.stderr
