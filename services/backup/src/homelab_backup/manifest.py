"""The checksum manifest: sha256 and size of every file, recorded at backup time, checked by restore drills.

It is computed by us, not by restic, so a drill proves the restored bytes are the bytes that were read from the
volume, whatever restic or the storage did in between. Files whose size or mtime changed between hashing and the
end of the backup are listed under ``changed``: their content in the snapshot is whatever restic happened to read,
so they make the backup ``partial`` and the drill skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    size: int
    sha256: str
    mtime_ns: int = 0


@dataclass
class Manifest:
    files: dict[str, Entry] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = {
            "version": 1,
            "files": {path: {"size": e.size, "sha256": e.sha256} for path, e in sorted(self.files.items())},
            "changed": sorted(self.changed),
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(raw)
        if data.get("version") != 1:
            raise ValueError(f"unknown manifest version {data.get('version')!r}")
        files = {path: Entry(int(v["size"]), str(v["sha256"])) for path, v in data["files"].items()}
        return cls(files, list(data.get("changed", [])))


def walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Regular files under ``root`` as (path relative to root, absolute path), symlinks not followed."""
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(root).as_posix(), path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record(root: Path) -> tuple[Manifest, list[str]]:
    """Hash every file under ``root``; unreadable files are returned separately (restic will report them too)."""
    manifest = Manifest()
    unreadable: list[str] = []
    for rel, path in walk(root):
        try:
            before = path.stat()
            digest = file_sha256(path)
        except OSError:
            unreadable.append(rel)
            continue
        manifest.files[rel] = Entry(before.st_size, digest, before.st_mtime_ns)
    return manifest, unreadable


def mark_changed(manifest: Manifest, root: Path) -> list[str]:
    """After the backup: files whose size or mtime moved since they were hashed (changed while being read)."""
    changed = []
    for rel, entry in list(manifest.files.items()):
        try:
            now = (root / rel).stat()
        except OSError:
            now = None
        if now is None or now.st_size != entry.size or now.st_mtime_ns != entry.mtime_ns:
            changed.append(rel)
            del manifest.files[rel]
    manifest.changed = sorted(changed)
    return changed


@dataclass
class Comparison:
    checked: int = 0
    bytes: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unexpected)

    def describe(self) -> str:
        parts = []
        for label, paths in (
            ("differ", self.mismatched),
            ("missing", self.missing),
            ("not in manifest", self.unexpected),
        ):
            if paths:
                shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
                parts.append(f"{len(paths)} {label}: {shown}")
        return "; ".join(parts) or f"{self.checked} files match"


def compare(manifest: Manifest, root: Path) -> Comparison:
    """Every file in the manifest restored under ``root`` with the same size and sha256, and nothing else."""
    result = Comparison()
    present = dict(walk(root))
    to_hash: list[tuple[str, Path, Entry]] = []
    for rel, entry in manifest.files.items():
        path = present.pop(rel, None)
        if path is None:
            result.missing.append(rel)
            continue
        result.checked += 1
        result.bytes += entry.size
        to_hash.append((rel, path, entry))

    def same(item: tuple[str, Path, Entry]) -> bool:
        _, path, entry = item
        try:
            return path.stat().st_size == entry.size and file_sha256(path) == entry.sha256
        except OSError:
            return False

    # hashlib hashes outside the GIL: one thread per core (nothing else runs during a drill's compare)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for (rel, _, _), ok in zip(to_hash, pool.map(same, to_hash), strict=True):
            if not ok:
                result.mismatched.append(rel)
    result.unexpected = sorted(rel for rel in present if rel not in manifest.changed)
    return result
