"""restic, wrapped: one subprocess per call with a timeout, ``--json`` parsed, the exit status classified.

restic >= 0.17 tells failures apart by exit code (0 ok, 1 fatal, 3 some source files unreadable, 10 repository
does not exist, 11 failed to lock, 12 wrong password, 130 interrupted) and, with ``--json``, prints a final
``{"message_type": "exit_error", "code": ..., "message": ...}`` on stderr. Older releases (Debian 12's 0.14)
return 1 for all of these, so the message is classified too: a wrong password is never taken for a missing
repository, and nothing but exit 0 with a parsed summary is ever a success.

The password reaches restic through ``RESTIC_PASSWORD_FILE`` (a file in a private temporary directory, mode
0600), never an argument or a log line; backend credentials (``AWS_*``, ``RESTIC_REST_*``...) go through the
environment of that one process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What a restic call came to; only ``ok`` is a success."""

    ok = "ok"
    partial = "partial"  # exit 3, or files that changed while being read: the snapshot is incomplete
    no_repository = "no_repository"  # exit 10
    locked = "locked"  # exit 11
    wrong_password = "wrong_password"  # noqa: S105 (exit 12; a name, not a password)
    corrupted = "corrupted"  # check found errors, or restored bytes differ from the manifest
    no_space = "no_space"  # the repository's storage is full
    unreachable = "unreachable"  # the backend cannot be reached
    timeout = "timeout"  # our deadline passed; restic was killed
    interrupted = "interrupted"  # exit 130
    failed = "failed"  # any other fatal error


#: What to do next, per outcome (shown in the API, the Events and the logs).
ADVICE: dict[Outcome, str] = {
    Outcome.ok: "",
    Outcome.partial: "some files could not be read (permissions, or they changed during the backup); the "
    "snapshot lacks them: check the listed files, or use a pre-backup command for live databases",
    Outcome.no_repository: "the repository does not exist: set init: true on it in the site file for a new "
    "repository, or fix its url",
    Outcome.locked: "another restic holds the lock; a lock older than the stale threshold is removed "
    "automatically, a younger one is waited for at the next run",
    Outcome.wrong_password: "the password does not open this repository: fix the repository's password Secret",
    Outcome.corrupted: "the repository has damaged data: run `restic check --read-data` and `restic repair` "
    "(see the backup README's runbook); back up to the other repository meanwhile",
    Outcome.no_space: "the repository's storage is full: free space or prune, then the next run continues",
    Outcome.unreachable: "the repository's server did not answer: check the server and the network",
    Outcome.timeout: "restic took longer than the timeout and was stopped: raise timeout_seconds or check the server",
    Outcome.interrupted: "restic was interrupted; the next run continues",
    Outcome.failed: "restic failed: see the message",
}

_EXIT_CODES = {
    0: Outcome.ok,
    3: Outcome.partial,
    10: Outcome.no_repository,
    11: Outcome.locked,
    12: Outcome.wrong_password,
    130: Outcome.interrupted,
}

# Message patterns, for restic < 0.17 (exit 1 for everything) and for what no exit code covers. Order matters.
_MESSAGES: tuple[tuple[Outcome, tuple[str, ...]], ...] = (
    (Outcome.wrong_password, ("wrong password", "no key found")),
    (Outcome.no_repository, ("repository does not exist", "is there a repository at", "config file: no such")),
    (Outcome.locked, ("repository is already locked", "unable to create lock", "failed to lock")),
    (Outcome.no_space, ("no space left on device", "disk quota exceeded", "insufficient storage")),
    (Outcome.corrupted, ("repository contains errors", "pack file cannot be listed", "ciphertext verification")),
    (
        Outcome.unreachable,
        ("connection refused", "no such host", "connection reset", "i/o timeout", "eof", "broken pipe"),
    ),
)


def classify(code: int | None, text: str) -> Outcome:
    """The outcome of a restic exit status (None: killed by our timeout) and its error text."""
    if code is None:
        return Outcome.timeout
    if code in _EXIT_CODES and code != 0:
        return _EXIT_CODES[code]
    lowered = text.lower()
    for outcome, needles in _MESSAGES:
        if any(needle in lowered for needle in needles):
            return outcome
    return Outcome.ok if code == 0 else Outcome.failed


@dataclass(frozen=True)
class Repository:
    """A restic repository: its name (for metrics and the API), restic's URL, password and backend env."""

    name: str
    url: str
    password: str = field(repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    offsite: bool = False
    init: bool = False
    #: Extended options (``restic -o key=value``), e.g. ``sftp.command`` or ``s3.region``.
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """local, sftp, rest, s3, b2, ... (the part of the URL before the first colon)."""
        scheme, sep, _ = self.url.partition(":")
        return scheme if sep and scheme.isalnum() and len(scheme) > 1 else "local"


@dataclass
class Result:
    """One restic call: its outcome, the JSON messages it printed, its errors and how long it took."""

    args: list[str]
    code: int | None
    outcome: Outcome
    messages: list[Any]  # the JSON values printed: objects, or one array (snapshots, forget)
    errors: list[str]
    seconds: float
    lines: list[str] = field(default_factory=list)  # stdout that is not JSON (`restic list` prints plain IDs)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ok

    @property
    def summary(self) -> dict[str, Any]:
        """The last ``summary`` message (backup, restore, check), or {}."""
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("message_type") == "summary":
                return message
        return {}

    @property
    def error(self) -> str:
        """The most telling error line, for a person."""
        return self.errors[-1] if self.errors else ("" if self.ok else f"restic exited with {self.code}")

    @property
    def advice(self) -> str:
        return ADVICE[self.outcome]


def _error_text(message: Any) -> str | None:
    """The human text of an error message restic printed as JSON."""
    if not isinstance(message, dict):
        return None
    kind = message.get("message_type")
    if kind == "exit_error":
        return str(message.get("message", ""))
    if kind == "error":
        error = message.get("error")
        text = error.get("message", "") if isinstance(error, dict) else str(error or "")
        item = message.get("item")
        return f"{item}: {text}" if item else str(text)
    return None


@dataclass
class Restic:
    """Runs restic against repositories; ``command_prefix`` runs it under another command (tests drop capabilities)."""

    binary: str = "restic"
    timeout: float = 6 * 3600.0
    cache_dir: Path | None = None
    command_prefix: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @contextmanager
    def _environment(self, repo: Repository) -> Iterator[dict[str, str]]:
        with tempfile.TemporaryDirectory(prefix="homelab-backup-") as private:
            password_file = Path(private) / "password"
            password_file.touch(mode=0o600)
            password_file.write_text(repo.password, encoding="utf-8")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", private),
                "RESTIC_REPOSITORY": repo.url,
                "RESTIC_PASSWORD_FILE": str(password_file),
                "RESTIC_PROGRESS_FPS": "0.2",
                **self.extra_env,
                **repo.env,
            }
            if self.cache_dir is not None:
                env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
            else:
                env["RESTIC_CACHE_DIR"] = str(Path(private) / "cache")
            yield env

    def run(
        self,
        repo: Repository,
        args: Sequence[str],
        *,
        stdin: IO[bytes] | None = None,
        timeout: float | None = None,
        cwd: str | Path | None = None,
    ) -> Result:
        """One restic call (``--json`` added); never raises for restic's own failures."""
        extended = [arg for key, value in sorted(repo.options.items()) for arg in ("-o", f"{key}={value}")]
        argv = [*self.command_prefix, self.binary, *args, *extended, "--json"]
        deadline = self.timeout if timeout is None else timeout
        started = time.monotonic()
        messages: list[Any] = []
        errors: list[str] = []
        plain: list[str] = []
        with self._environment(repo) as env:
            process = subprocess.Popen(
                argv,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,  # our timeout kills restic and whatever it started
            )
            assert process.stdout is not None
            assert process.stderr is not None
            stderr_lines: list[str] = []
            stderr = process.stderr
            reader = threading.Thread(target=lambda: stderr_lines.extend(_lines(stderr)), daemon=True)
            reader.start()
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                _kill_group(process)

            timer = threading.Timer(deadline, expire)
            timer.start()
            try:
                for line in _lines(process.stdout):
                    message = _parse(line)
                    if message is None:
                        if line.strip():
                            plain.append(line.strip())
                        continue
                    if isinstance(message, dict) and message.get("message_type") == "status":
                        continue  # progress: only the latest would matter, and nobody reads it here
                    messages.append(message)
                    text = _error_text(message)
                    if text:
                        errors.append(text)
                code: int | None = process.wait()
            finally:
                timer.cancel()
                if process.poll() is None:
                    _kill_group(process)
                    process.wait()
            reader.join(timeout=10)
            process.stdout.close()
            process.stderr.close()
            if expired.is_set():
                code = None
        for line in stderr_lines:
            message = _parse(line)
            if message is not None:
                text = _error_text(message)
                if text:
                    errors.append(text)
                    if isinstance(message, dict) and message.get("message_type") == "exit_error":
                        messages.append(message)
            elif line.strip():
                errors.append(line.strip())
        if code is None:
            errors.append(f"timed out after {deadline:.0f}s; restic was stopped")
        outcome = classify(code, "\n".join(errors))
        result = Result(list(args), code, outcome, messages, errors, time.monotonic() - started, plain)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "restic " + (args[0] if args else ""),
            extra={
                "repository": repo.name,
                "outcome": outcome.value,
                "exit_code": code,
                "seconds": round(result.seconds, 3),
                "error": result.error if not result.ok else "",
            },
        )
        return result


def _lines(stream: IO[bytes]) -> Iterator[str]:
    for raw in stream:
        yield raw.decode("utf-8", errors="replace").rstrip("\n")


def _parse(line: str) -> Any:
    """A JSON object or array restic printed, else None."""
    if not line.startswith(("{", "[")):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict | list) else None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
