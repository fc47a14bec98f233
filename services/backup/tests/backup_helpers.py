"""Real restic repositories on loopback for the backup tests: local, SFTP (sshd), REST (rclone), S3 (moto).

restic is the Debian 13 build that ``./task deps`` puts at ``.cache/bin/restic`` (scripts/ensure-restic.sh); the
servers are Debian's sshd and rclone and moto's S3 server from the dev dependencies, each on a free port of
127.0.0.1, stopped at the end of the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from homelab_backup.restic import Repository, Restic
from homelab_common.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
RESTIC = ROOT / ".cache" / "bin" / "restic"
PASSWORD = "correct horse battery staple"


def restic_binary() -> str:
    if not RESTIC.exists():
        pytest.skip("restic 0.18 missing: run ./task deps (scripts/ensure-restic.sh)")
    return str(RESTIC)


def make_restic(tmp_path: Path, **options: object) -> Restic:
    cache = tmp_path / "restic-cache"
    return Restic(restic_binary(), cache_dir=cache, **options)  # type: ignore[arg-type]


def wait_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Server:
    """A repository server the test can kill and start again (same port, same storage)."""

    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def local_repo(tmp_path: Path, name: str = "nas") -> Repository:
    return Repository(name, str(tmp_path / f"repo-{name}"), PASSWORD, init=True)


def rest_server(storage: Path) -> Server:
    if shutil.which("rclone") is None:
        pytest.skip("rclone missing: ./task deps installs it (scripts/test-debs.txt)")
    port = free_port()
    storage.mkdir(parents=True, exist_ok=True)
    argv = ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(storage)]
    return Server(argv, port, {"RCLONE_CONFIG": "/dev/null"})


def rest_repo(server: Server, name: str = "rest") -> Repository:
    return Repository(name, f"rest:http://127.0.0.1:{server.port}/", PASSWORD, offsite=True, init=True)


def s3_server() -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Server(argv, port)


def s3_repo(server: Server, name: str = "s3") -> Repository:
    env = {
        "AWS_ACCESS_KEY_ID": "homelab-test",
        "AWS_SECRET_ACCESS_KEY": "homelab-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    url = f"s3:http://127.0.0.1:{server.port}/backups/restic"
    return Repository(name, url, PASSWORD, env=env, offsite=True, init=True)


@dataclass
class Sshd:
    server: Server
    key: Path


def sshd(workdir: Path) -> Sshd:
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists() or shutil.which("ssh") is None:
        pytest.skip("openssh missing: ./task deps installs it (scripts/test-debs.txt)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = workdir / "host_key", workdir / "user_key"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = workdir / "authorized_keys"
    shutil.copy(user_key.with_suffix(".pub"), authorized)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PidFile {workdir / 'sshd.pid'}\nStrictModes no\nPasswordAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
        encoding="utf-8",
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    return Sshd(Server([binary, "-D", "-e", "-f", str(config)], port), user_key)


def sftp_repo(server: Sshd, path: Path, name: str = "sftp") -> Repository:
    user = os.environ.get("USER") or "root"
    command = (
        f"ssh -p {server.server.port} -i {server.key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o BatchMode=yes -o LogLevel=ERROR {user}@127.0.0.1 -s sftp"
    )
    return Repository(
        name, f"sftp:{user}@127.0.0.1:{path}", PASSWORD, offsite=True, init=True, options={"sftp.command": command}
    )


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; all stopped at its end."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def mixed_tree(root: Path, *, files: int = 40, size: int = 64 * 1024, seed: int = 7) -> dict[str, bytes]:
    """Random and compressible files, nested, an empty file and a non-ASCII name: what a volume holds."""
    import random

    rng = random.Random(seed)
    written: dict[str, bytes] = {}
    for index in range(files):
        rel = f"dir{index % 4}/sub{index % 3}/file-{index}.bin" if index % 5 else f"top-{index}.txt"
        data = rng.randbytes(size) if index % 2 else (f"line {index}\n" * (size // 8)).encode()
        written[rel] = data
    written["empty"] = b""
    written["ünïcode name.txt"] = "ü\n".encode()
    for rel, data in written.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return written


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }
