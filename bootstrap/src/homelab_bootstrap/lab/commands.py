"""Running the host tools the lab is built from (ip, dnsmasq, qemu, apt-get), with errors a person can act on.

Every failure names the command, what it printed and what to check, e.g. ``ip netns add failed: are you root?``;
long-running children are :class:`LabProcess` objects whose output goes to a log file the error points at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO


class LabError(Exception):
    """Building or running the lab failed; the message says what failed and what to do."""


def require_tool(name: str, package: str) -> str:
    """The path of ``name``, or a LabError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise LabError(f"{name} not found: install the Debian package {package} (scripts/ensure-debs.sh {package})")
    return path


def run(
    cmd: Sequence[str], *, hint: str, timeout: float = 60.0, input_data: bytes | None = None, cwd: Path | None = None
) -> str:
    """Run ``cmd`` to completion and return its stdout; on failure raise LabError with ``hint``."""
    try:
        done = subprocess.run(list(cmd), input=input_data, capture_output=True, timeout=timeout, check=False, cwd=cwd)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} not found ({exc}): {hint}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)} did not finish within {timeout:.0f}s: {hint}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise LabError(f"{' '.join(cmd)} failed (exit {done.returncode}: {output or 'no output'}): {hint}")
    return done.stdout.decode(errors="replace")


def netns_exec(namespace: str, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run inside ``namespace`` (``ip netns exec`` execs it, so the PID is the command's own)."""
    return ["ip", "netns", "exec", namespace, *cmd]


class LabProcess:
    """A long-running child (dnsmasq, a service, QEMU) with its output in ``log_path``."""

    def __init__(
        self, name: str, cmd: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None, hint: str = ""
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.hint = hint
        self.started_at = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise LabError(f"{name}: could not start {' '.join(self.cmd)} ({exc}): {hint}") from None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process has printed so far."""
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Raise LabError with the tail of the log when the process has exited."""
        code = self.popen.poll()
        if code is not None:
            tail = "\n".join(self.output().splitlines()[-20:])
            raise LabError(
                f"{self.name} exited with {code} ({' '.join(self.cmd)}); {self.hint}\n"
                f"last output ({self.log_path}):\n{tail}"
            )

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; idempotent."""
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        self._log.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
