"""MkDocs hooks for the book (mkdocs.yml `hooks:`): nav globs, and the diagrams rendered from diagrams/*.py.

- A nav entry with a ``*`` (``runbooks/*.md``) becomes every matching page, sorted, ``index.md`` first, so a new
  runbook, service or chart page is in the nav without an edit (and ``validation.nav.omitted_files: warn`` with
  ``--strict`` fails the build for any page that is in no nav entry).
- Every ``diagrams/<name>.py`` with a ``render(out_dir) -> Path`` function is rendered (graphviz, through the
  ``diagrams`` package) and published as ``diagrams/<name>.png``, so pages link ``../diagrams/<name>.png``. Renders
  are cached by the source's hash under ``.cache/homelab/diagrams/`` (``task docs`` re-renders only what changed).
"""

from __future__ import annotations

import fnmatch
import hashlib
import runpy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
DIAGRAMS = ROOT / "diagrams"
CACHE = ROOT / ".cache" / "homelab" / "diagrams"


def _expand(entries: list[Any], pages: list[str]) -> list[Any]:
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str) and "*" in entry:
            found = sorted(p for p in pages if fnmatch.fnmatch(p, entry))
            found.sort(key=lambda p: not p.endswith("/index.md"))
            if not found:
                raise ValueError(f"nav entry {entry!r} matches no page")
            out.extend(found)
        elif isinstance(entry, dict):
            out.append({k: _expand(v, pages) if isinstance(v, list) else v for k, v in entry.items()})
        else:
            out.append(entry)
    return out


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    docs = Path(config.docs_dir)
    pages = [p.relative_to(docs).as_posix() for p in docs.rglob("*.md")]
    config.nav = _expand(config.nav or [], pages)
    return config


def render(source: Path) -> Path:
    """``diagrams/<name>.py`` rendered to a PNG (cached by the hash of the source and of this hook)."""
    digest = hashlib.sha256(source.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]
    cached = CACHE / f"{source.stem}-{digest}.png"
    if not cached.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            produced = Path(runpy.run_path(str(source))["render"](Path(tmp)))
            shutil.copyfile(produced, cached.with_suffix(".tmp"))
        cached.with_suffix(".tmp").replace(cached)
    return cached


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for source in sorted(DIAGRAMS.glob("*.py")):
        if "def render(" not in source.read_text(encoding="utf-8"):
            continue
        uri = f"diagrams/{source.stem}.png"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(render(source))))
    return files
