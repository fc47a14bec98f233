"""Start a built image's entrypoint the way the chart runs it, without a container engine.

``running(ref, ...)`` makes a working container of the image with buildah (``buildah from`` + ``buildah mount``),
then starts the image's ENTRYPOINT as the image's USER (10001:10001) in a private mount namespace: the image's
root filesystem is mounted read-only, and only the chart's writable mounts (emptyDir, PVC: tmpfs here) and its
read-only mounts (ConfigMaps, Secrets: the test's files, bound read-only) are added, with /proc and the four
device nodes a Python process needs. The network is the host's: services bind 127.0.0.1 and free ports.

The process started is the entrypoint itself (``unshare`` and ``chroot`` exec into it), so a signal sent to
``Running.process`` reaches gunicorn's master as the kubelet's SIGTERM reaches PID 1 of a container.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chart_harness import REPO, render_chart

DEVICES = ("null", "zero", "random", "urandom")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    root: Path  # the image's root filesystem on the host (buildah mount)
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_http(self, url: str, timeout: float = 90.0) -> bytes:
        """GET ``url`` until it answers 200 (the process must stay up meanwhile); returns the body."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the entrypoint exited ({self.process.returncode}):\n{self.logs()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body: bytes = response.read()
                    if response.status == 200:
                        return body
            except urllib.error.HTTPError as exc:  # e.g. 503 from /readyz while the caches sync
                last = exc
                exc.close()
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s ({last}):\n{self.logs()}")


def image_config(ref: str) -> dict[str, Any]:
    out = subprocess.run(["buildah", "inspect", "--type", "image", ref], check=True, capture_output=True).stdout
    config: dict[str, Any] = json.loads(out)["OCIv1"]["config"]
    return config


def chart_mounts(name: str) -> tuple[list[str], list[str]]:
    """(writable, read-only) mount paths of the chart's main container, as rendered with its default values."""
    for doc in render_chart(REPO / "charts" / name):
        if doc.kind not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        containers = doc.body["spec"]["template"]["spec"]["containers"]
        mounts = containers[0].get("volumeMounts", [])
        writable = [m["mountPath"] for m in mounts if not m.get("readOnly")]
        readonly = [m["mountPath"] for m in mounts if m.get("readOnly")]
        return writable, readonly
    raise AssertionError(f"charts/{name} renders no workload")


def _script(root: Path, writable: Sequence[str], readonly: Mapping[str, Path], user: str, argv: Sequence[str]) -> str:
    r = shlex.quote(str(root))
    lines = ["set -e", f"mount --bind {r} {r}", f"mkdir -p {r}/dev {r}/proc", f"mount -t tmpfs -o mode=755 dev {r}/dev"]
    for device in DEVICES:
        lines += [f"touch {r}/dev/{device}", f"mount --bind /dev/{device} {r}/dev/{device}"]
    lines.append(f"mount -t proc proc {r}/proc")
    for path in writable:
        target = shlex.quote(f"{root}{path}")
        lines += [f"mkdir -p {target}", f"mount -t tmpfs -o mode=1777 emptydir {target}"]
    for path, source in readonly.items():
        target = shlex.quote(f"{root}{path}")
        lines += [f"mkdir -p {target}", f"mount --bind {shlex.quote(str(source))} {target}"]
        lines.append(f"mount -o remount,bind,ro {target}")
    lines.append(f"mount -o remount,bind,ro {r}")
    lines.append(f"exec chroot --userspec={shlex.quote(user)} {r} {shlex.join(argv)}")
    return "\n".join(lines)


@contextlib.contextmanager
def container(ref: str) -> Iterator[Path]:
    """A working container of ``ref``; yields its root filesystem (removed afterwards)."""
    name = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        root = subprocess.run(["buildah", "mount", name], check=True, capture_output=True, text=True).stdout.strip()
        yield Path(root)
    finally:
        subprocess.run(["buildah", "umount", name], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


@contextlib.contextmanager
def running(
    ref: str,
    log: Path,
    *,
    env: Mapping[str, str],
    writable: Sequence[str] = ("/tmp",),
    readonly: Mapping[str, Path] | None = None,
    args: Sequence[str] = (),
    entrypoint: Sequence[str] | None = None,
) -> Iterator[Running]:
    """Start the image's entrypoint (plus ``args``) with the image's Env and ``env``; stopped (SIGKILL) at exit."""
    config = image_config(ref)
    argv = [*(entrypoint if entrypoint is not None else config.get("Entrypoint") or []), *args]
    image_env = dict(item.split("=", 1) for item in config.get("Env") or [])
    with container(ref) as root, log.open("ab") as out:
        script = _script(root, writable, dict(readonly or {}), config.get("User") or "0:0", argv)
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            env={**image_env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Running(process, root, log)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def run_once(ref: str, log: Path, **kwargs: Any) -> tuple[int, str]:
    """Run the entrypoint to completion (60 s at most); returns its exit status and output."""
    with running(ref, log, **kwargs) as started:
        try:
            code = started.process.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{ref} did not exit within 60 s:\n{started.logs()}") from exc
        return code, started.logs()


def mount_options(pid: int, path: str = "/") -> list[str]:
    """The mount options of ``path`` as process ``pid`` sees it (from /proc/PID/mountinfo)."""
    options: list[str] = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == path:
            options = fields[5].split(",")  # the last mount at a path is the one in effect
    return options


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")
