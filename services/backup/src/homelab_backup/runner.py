"""The runner: what one Job does to one volume and one repository (backup, check, forget, drill, restore).

Every step goes through :class:`~homelab_backup.restic.Restic` and ends in a :class:`Report` whose ``outcome``
is ``ok`` only when restic succeeded *and* nothing was left out: unreadable files, files that changed while being
read, or a pre-backup command that failed make it ``partial`` or ``failed``, never a success.

Snapshots of a volume carry the tags ``pvc=<namespace>/<name>`` and ``kind=data``; next to each, a small snapshot
tagged ``kind=manifest`` and ``of=<snapshot id>`` holds the checksum manifest the drills compare against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homelab_backup.manifest import Comparison, Entry, Manifest, compare, mark_changed, record
from homelab_backup.podexec import PodExec
from homelab_backup.restic import ADVICE, Outcome, Repository, Restic, Result

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


@dataclass
class Report:
    """The result of one runner action, as the API, the metrics and the Events show it."""

    action: str
    repository: str
    target: str
    outcome: Outcome
    message: str = ""
    snapshot: str = ""
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    bytes_added: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    finished: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ok

    @property
    def advice(self) -> str:
        return ADVICE[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "repository": self.repository,
            "target": self.target,
            "outcome": self.outcome.value,
            "message": self.message,
            "advice": self.advice,
            "snapshot": self.snapshot,
            "seconds": round(self.seconds, 3),
            "files": self.files,
            "bytes": self.bytes,
            "bytes_added": self.bytes_added,
            "details": self.details,
            "finished": self.finished,
        }


def pvc_tags(target: str) -> list[str]:
    return [f"pvc={target}", "kind=data"]


@dataclass
class Runner:
    """Backs up, checks, prunes, drills and restores one target (``namespace/pvc``) against repositories."""

    restic: Restic
    #: A lock older than this is stale (its holder is gone): it is removed and the call retried.
    stale_lock_seconds: float = 3600.0

    # -- restic with the lock policy ----------------------------------------------------------------------------

    def call(self, repo: Repository, args: Sequence[str], **options: Any) -> Result:
        """restic ``args``; on a lock failure, remove stale locks (restic's own notion, then ours) and retry once."""
        result = self.restic.run(repo, args, **options)
        if result.outcome is not Outcome.locked:
            return result
        self.restic.run(repo, ["unlock"])  # locks restic itself knows are stale (dead process on this host)
        retried = self.restic.run(repo, args, **options)
        if retried.outcome is not Outcome.locked:
            return retried
        ages = self.lock_ages(repo)
        if ages and min(ages) >= self.stale_lock_seconds:
            log.warning(
                "removing stale locks",
                extra={"repository": repo.name, "locks": len(ages), "oldest_seconds": round(max(ages))},
            )
            self.restic.run(repo, ["unlock", "--remove-all"])
            return self.restic.run(repo, args, **options)
        retried.errors.append(
            f"{len(ages)} lock(s), the youngest {min(ages, default=0):.0f}s old (stale after "
            f"{self.stale_lock_seconds:.0f}s): another restic is working on this repository"
        )
        return retried

    def lock_ages(self, repo: Repository) -> list[float]:
        """Age in seconds of every lock in the repository (read without locking)."""
        listed = self.restic.run(repo, ["list", "locks", "--no-lock"], timeout=120)
        ages = []
        now = datetime.now(UTC)
        for lock_id in _ids(listed):
            shown = self.restic.run(repo, ["cat", "lock", lock_id, "--no-lock"], timeout=120)
            try:  # `cat` prints the lock as indented JSON over several lines
                stamp = json.loads("\n".join(shown.lines)).get("time")
            except (ValueError, AttributeError):
                continue  # removed meanwhile, or unreadable: not ours to judge
            if isinstance(stamp, str):
                ages.append((now - _parse_time(stamp)).total_seconds())
        return ages

    def prepare(self, repo: Repository) -> Result:
        """Open the repository; create it only when the site file says it is new (``init: true``)."""
        opened = self.restic.run(repo, ["cat", "config", "--no-lock"], timeout=300)
        if opened.outcome is Outcome.no_repository and repo.init:
            log.info("initialising repository", extra={"repository": repo.name})
            return self.restic.run(repo, ["init"], timeout=300)
        return opened

    # -- actions ------------------------------------------------------------------------------------------------

    def backup(self, repo: Repository, target: str, source: Path, *, host: str = "") -> Report:
        """Back up ``source`` (the read-only mount of the volume) with its checksum manifest."""
        started = time.monotonic()
        # The manifest is hashed while restic reads the same files (both mostly wait on the disk; hashlib runs
        # outside the GIL): a file written meanwhile changes its mtime or size and is caught by mark_changed.
        hashed: list[tuple[Manifest, list[str]]] = []
        hasher = threading.Thread(target=lambda: hashed.append(record(source)), name="manifest", daemon=True)
        hasher.start()
        args = ["backup", ".", "--host", host or _host(target), *_tag_args(pvc_tags(target))]
        result = self.call(repo, args, cwd=source)
        hasher.join()
        if not hashed:  # record() itself failed (logged by the thread's excepthook): nothing to verify against
            message = "could not record the checksum manifest of the volume"
            return Report("backup", repo.name, target, Outcome.failed, message, seconds=time.monotonic() - started)
        manifest, unreadable = hashed[0]
        if result.outcome is Outcome.no_repository and repo.init:
            ready = self.prepare(repo)
            if not ready.ok:
                return self._failed("backup", repo, target, ready, started)
            result = self.call(repo, args, cwd=source)
        changed = mark_changed(manifest, source)
        summary = result.summary
        snapshot = str(summary.get("snapshot_id", ""))
        if result.outcome in (Outcome.ok, Outcome.partial) and snapshot:
            saved = self._save_manifest(repo, target, snapshot, manifest, host or _host(target))
            if not saved.ok:
                return self._failed("backup", repo, target, saved, started, snapshot=snapshot)
        outcome = result.outcome
        problems = [e for e in result.errors if e]
        if outcome is Outcome.ok and (changed or unreadable):
            outcome = Outcome.partial
        if changed:
            problems.append(f"{len(changed)} file(s) changed while being read: {', '.join(changed[:5])}")
        if unreadable:
            problems.append(f"{len(unreadable)} file(s) unreadable: {', '.join(unreadable[:5])}")
        if outcome is Outcome.ok and not snapshot:
            outcome, problems = Outcome.failed, [*problems, "restic reported no snapshot"]
        return Report(
            "backup",
            repo.name,
            target,
            outcome,
            "; ".join(problems) if problems else f"snapshot {snapshot[:8]}",
            snapshot,
            time.monotonic() - started,
            int(summary.get("total_files_processed", 0)),
            int(summary.get("total_bytes_processed", 0)),
            int(summary.get("data_added", 0)),
            {"changed": changed, "unreadable": unreadable},
        )

    def backup_command(self, repo: Repository, target: str, dump: PodExec, filename: str) -> Report:
        """Back up what the pod's dump command writes to stdout (a database dump) as one file, with its checksum.

        The command runs inside the annotated pod (:class:`~homelab_backup.podexec.PodExec`); its output is
        streamed into ``restic backup --stdin`` and hashed on the way. When the command exits non-zero, or its exit
        status is unknown, the snapshot restic made of its (incomplete) output is forgotten and the backup is
        ``failed``, never a success.
        """
        started = time.monotonic()
        ready = self.prepare(repo)
        if not ready.ok:
            return self._failed("backup", repo, target, ready, started)
        digest = hashlib.sha256()
        size = 0
        reader, writer = _pipe()
        pump_errors: list[str] = []

        def pump() -> None:
            nonlocal size
            with writer:
                try:
                    for chunk in dump.chunks():
                        digest.update(chunk)
                        size += len(chunk)
                        writer.write(chunk)
                except BrokenPipeError:
                    pump_errors.append("restic stopped reading the dump")
                except Exception as exc:  # a broken exec stream: the dump is incomplete
                    pump_errors.append(f"the exec stream broke: {exc}")

        thread = threading.Thread(target=pump, name="dump", daemon=True)
        thread.start()
        args = ["backup", "--stdin", "--stdin-filename", filename, "--host", _host(target)]
        with reader:
            result = self.call(repo, [*args, *_tag_args(pvc_tags(target))], stdin=reader)
        thread.join()
        snapshot = str(result.summary.get("snapshot_id", ""))
        if dump.exit_code != 0 or pump_errors:
            if snapshot:
                self.restic.run(repo, ["forget", snapshot])
            problem = "; ".join([dump.describe_failure(), *pump_errors]) if dump.exit_code != 0 else pump_errors[0]
            message = f"{problem}; its output was not kept"
            return Report("backup", repo.name, target, Outcome.failed, message, "", time.monotonic() - started)
        if not result.ok or not snapshot:
            return self._failed("backup", repo, target, result, started)
        manifest = Manifest({filename: Entry(size, digest.hexdigest())})
        saved = self._save_manifest(repo, target, snapshot, manifest, _host(target))
        if not saved.ok:
            return self._failed("backup", repo, target, saved, started, snapshot=snapshot)
        return Report(
            "backup",
            repo.name,
            target,
            Outcome.ok,
            f"snapshot {snapshot[:8]} of the dump from {dump.where} ({size} bytes)",
            snapshot,
            time.monotonic() - started,
            1,
            size,
            int(result.summary.get("data_added", 0)),
        )

    def check(self, repo: Repository, target: str = "", *, subset: str = "") -> Report:
        """``restic check`` (``--read-data-subset`` when given, e.g. ``5%`` or ``1/7``)."""
        started = time.monotonic()
        args = ["check", *(["--read-data-subset", subset] if subset else [])]
        result = self.call(repo, args)
        outcome = result.outcome
        errors = int(result.summary.get("num_errors", 0) or 0)
        if outcome is Outcome.failed or (outcome is Outcome.ok and errors):
            outcome = Outcome.corrupted  # restic check: "Fatal: repository contains errors" (exit 1)
        message = result.error if outcome is not Outcome.ok else f"no errors ({subset or 'structure only'})"
        return Report("check", repo.name, target, outcome, message, seconds=time.monotonic() - started)

    def forget(self, repo: Repository, target: str, keep: dict[str, int]) -> Report:
        """Retention: ``forget --prune`` of this target's (or every target's) snapshots; manifests go with theirs."""
        started = time.monotonic()
        keep_args = [arg for name, count in sorted(keep.items()) if count for arg in (f"--keep-{name}", str(count))]
        if not keep_args:
            return Report("forget", repo.name, target, Outcome.failed, "no keep-* rule: refusing to forget everything")
        tags = f"pvc={target},kind=data" if target else "kind=data"  # no target: every volume, each on its own
        result = self.call(repo, ["forget", "--prune", "--tag", tags, *keep_args])
        if not result.ok:
            return self._failed("forget", repo, target, result, started)
        groups = [g for m in result.messages if isinstance(m, list) for g in m if isinstance(g, dict)]
        kept = {s["id"] for g in groups for s in g.get("keep") or []}
        removed = [s["id"] for g in groups for s in g.get("remove") or []]
        orphans = self._orphan_manifests(repo, target, kept)
        if orphans:
            pruned = self.call(repo, ["forget", "--prune", *orphans])
            if not pruned.ok:
                return self._failed("forget", repo, target, pruned, started)
        return Report(
            "forget",
            repo.name,
            target,
            Outcome.ok,
            f"kept {len(kept)}, removed {len(removed)} snapshot(s)",
            seconds=time.monotonic() - started,
            details={"kept": len(kept), "removed": len(removed)},
        )

    def snapshots(self, repo: Repository, target: str = "") -> tuple[Result, list[dict[str, Any]]]:
        """The data snapshots (of ``target``, or all), oldest first."""
        tags = f"pvc={target},kind=data" if target else "kind=data"
        result = self.call(repo, ["snapshots", "--tag", tags], timeout=600)
        listed: list[dict[str, Any]] = []
        for message in result.messages:
            if isinstance(message, list):  # `snapshots --json` prints one JSON array
                listed.extend(message)
        return result, listed

    def drill(self, repo: Repository, target: str, scratch: Path, snapshot: str = "latest") -> Report:
        """Restore a snapshot into ``scratch`` and compare it file by file with its manifest."""
        started = time.monotonic()
        listing, every = self._all_of(repo, target)  # one listing: the data snapshots and their manifests
        found = self._resolve(repo, target, snapshot, (listing, [s for s in every if "kind=data" in s["tags"]]))
        if isinstance(found, Result):
            return self._failed("drill", repo, target, found, started)
        snapshot_id = found
        manifests = [s for s in every if {"kind=manifest", f"of={snapshot_id}"} <= set(s["tags"])]
        manifest = self._load_manifest(repo, snapshot_id, listing, manifests)
        if isinstance(manifest, Result):
            return self._failed("drill", repo, target, manifest, started, snapshot=snapshot_id)
        with tempfile.TemporaryDirectory(prefix="drill-", dir=scratch) as into:
            restored = self.call(repo, ["restore", snapshot_id, "--target", into])
            if not restored.ok:
                outcome = Outcome.corrupted if restored.outcome is Outcome.failed else restored.outcome
                restored.outcome = outcome
                return self._failed("drill", repo, target, restored, started, snapshot=snapshot_id)
            comparison = compare(manifest, Path(into))
        seconds = time.monotonic() - started
        outcome = Outcome.ok if comparison.ok else Outcome.corrupted
        return Report(
            "drill",
            repo.name,
            target,
            outcome,
            comparison.describe(),
            snapshot_id,
            seconds,
            comparison.checked,
            comparison.bytes,
            details=_comparison_details(comparison, seconds),
        )

    def restore(
        self, repo: Repository, target: str, into: Path, snapshot: str = "latest", *, dry_run: bool = False
    ) -> Report:
        """Restore a snapshot into ``into`` (an operator's restore); ``dry_run`` lists what would be written."""
        started = time.monotonic()
        found = self._resolve(repo, target, snapshot)
        if isinstance(found, Result):
            return self._failed("restore", repo, target, found, started)
        if dry_run:
            listed = self.call(repo, ["ls", found], timeout=600)
            if not listed.ok:
                return self._failed("restore", repo, target, listed, started, snapshot=found)
            files = [
                {"path": m["path"], "size": int(m.get("size", 0))}
                for m in listed.messages
                if isinstance(m, dict) and m.get("message_type") == "node" and m.get("type") == "file"
            ]
            return Report(
                "restore",
                repo.name,
                target,
                Outcome.ok,
                f"dry run: would write {len(files)} file(s) into {into}",
                found,
                time.monotonic() - started,
                len(files),
                sum(f["size"] for f in files),
                details={"dry_run": True, "files": files[:1000]},
            )
        result = self.call(repo, ["restore", found, "--target", str(into)])
        if not result.ok:
            return self._failed("restore", repo, target, result, started, snapshot=found)
        summary = result.summary
        return Report(
            "restore",
            repo.name,
            target,
            Outcome.ok,
            f"restored snapshot {found[:8]} into {into}",
            found,
            time.monotonic() - started,
            int(summary.get("files_restored", 0)),
            int(summary.get("bytes_restored", 0)),
        )

    # -- helpers ------------------------------------------------------------------------------------------------

    def _save_manifest(self, repo: Repository, target: str, snapshot: str, manifest: Manifest, host: str) -> Result:
        with tempfile.TemporaryFile() as handle:
            handle.write(manifest.to_json())
            handle.seek(0)
            tags = _tag_args([f"pvc={target}", "kind=manifest", f"of={snapshot}"])
            return self.call(
                repo, ["backup", "--stdin", "--stdin-filename", MANIFEST_FILE, "--host", host, *tags], stdin=handle
            )

    def _all_of(self, repo: Repository, target: str) -> tuple[Result, list[dict[str, Any]]]:
        """Every snapshot of ``target`` (data and manifests), oldest first."""
        result = self.call(repo, ["snapshots", "--tag", f"pvc={target}"], timeout=600)
        listed = [s for m in result.messages if isinstance(m, list) for s in m if isinstance(s, dict)]
        for item in listed:
            item["tags"] = list(item.get("tags") or [])
        return result, listed

    def _load_manifest(
        self, repo: Repository, snapshot: str, listed: Result, manifests: list[dict[str, Any]]
    ) -> Manifest | Result:
        ids = [str(s["id"]) for s in manifests]
        if not listed.ok:
            return listed
        if not ids:
            listed.outcome = Outcome.corrupted
            listed.errors.append(f"snapshot {snapshot[:8]} has no checksum manifest: it cannot be verified")
            return listed
        with tempfile.TemporaryDirectory(prefix="manifest-") as into:
            got = self.call(repo, ["restore", ids[-1], "--target", into], timeout=600)
            if not got.ok:
                return got
            try:
                return Manifest.from_json((Path(into) / MANIFEST_FILE).read_bytes())
            except (OSError, ValueError, KeyError) as exc:
                got.outcome = Outcome.corrupted
                got.errors.append(f"the checksum manifest of {snapshot[:8]} is unreadable: {exc}")
                return got

    def _resolve(
        self,
        repo: Repository,
        target: str,
        snapshot: str,
        known: tuple[Result, list[dict[str, Any]]] | None = None,
    ) -> str | Result:
        result, listed = known or self.snapshots(repo, target)
        if not result.ok:
            return result
        if snapshot == "latest":
            if not listed:
                result.outcome = Outcome.failed
                result.errors.append(f"no snapshot of {target} in {repo.name}")
                return result
            return str(listed[-1]["id"])
        for item in listed:
            if str(item["id"]).startswith(snapshot) or item.get("short_id") == snapshot:
                return str(item["id"])
        result.outcome = Outcome.failed
        result.errors.append(f"no snapshot {snapshot} of {target} in {repo.name}")
        return result

    def _orphan_manifests(self, repo: Repository, target: str, kept: set[str]) -> list[str]:
        tags = f"pvc={target},kind=manifest" if target else "kind=manifest"
        listed = self.call(repo, ["snapshots", "--tag", tags], timeout=600)
        orphans = []
        for message in listed.messages:
            if not isinstance(message, list):
                continue
            for snap in message:
                of = next((t[3:] for t in snap.get("tags") or [] if t.startswith("of=")), "")
                if of not in kept:
                    orphans.append(str(snap["id"]))
        return orphans

    @staticmethod
    def _failed(
        action: str, repo: Repository, target: str, result: Result, started: float, *, snapshot: str = ""
    ) -> Report:
        outcome = Outcome.failed if result.outcome is Outcome.ok else result.outcome
        return Report(action, repo.name, target, outcome, result.error, snapshot, time.monotonic() - started)


def _tag_args(tags: Sequence[str]) -> list[str]:
    return [arg for tag in tags for arg in ("--tag", tag)]


def _host(target: str) -> str:
    """restic's host field for a target: parent snapshots are found per host and path."""
    return target.replace("/", ".") or "homelab"


def _ids(result: Result) -> list[str]:
    """IDs printed one per line by ``restic list`` (plain text even with --json)."""
    return [line for line in result.lines if len(line) == 64 and all(c in "0123456789abcdef" for c in line)]


def _parse_time(stamp: str) -> datetime:
    # restic prints nanoseconds and a zone offset: 2026-11-30T21:20:50.640589095+00:00 or ...Z
    head, _, rest = stamp.partition(".")
    zone = ""
    for sign in ("Z", "+", "-"):
        if sign in rest:
            zone = rest[rest.index(sign) :]
            break
    when = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    return when.astimezone(UTC)


def _comparison_details(comparison: Comparison, seconds: float) -> dict[str, Any]:
    return {
        "mismatched": comparison.mismatched[:100],
        "missing": comparison.missing[:100],
        "unexpected": comparison.unexpected[:100],
        "bytes_per_second": round(comparison.bytes / seconds) if seconds > 0 else 0,
    }


def _pipe() -> tuple[Any, Any]:
    import os

    read_fd, write_fd = os.pipe()
    return open(read_fd, "rb"), open(write_fd, "wb")


__all__ = ["Report", "Runner"]
