"""The book (mkdocs.yml, docs/): it builds strictly, and its generated reference pages are current.

`./task docs:gen` writes the generated pages (scripts/docs/reference.py); these tests fail when one is stale,
naming that command. The strict build fails on a broken link, a missing anchor and a page in no nav entry.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "scripts" / "docs" / "reference.py"


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_generated_reference_is_current() -> None:
    # A fresh process: the metrics of each service are what importing and building it adds to the registry.
    result = _run(str(GENERATOR), "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_page_is_named_with_the_command_that_fixes_it() -> None:
    generator = runpy.run_path(str(GENERATOR))
    current = (ROOT / "docs" / "reference" / "site.md").read_text(encoding="utf-8")
    problems = generator["stale"]({"reference/site.md": current, "reference/services/dns.md": "# dns\n"})
    assert "docs/reference/services/dns.md" in problems
    assert "docs/reference/site.md" not in problems
    assert "docs/reference/charts/dns.md (no longer generated)" in problems  # not in this smaller set
    assert "./task docs:gen" in generator["stale_message"](problems)


def test_book_builds_strictly_with_every_runbook_in_the_nav(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = _run("-m", "mkdocs", "build", "--strict", "--site-dir", str(site))
    assert result.returncode == 0, result.stderr
    home = (site / "index.html").read_text(encoding="utf-8")
    runbooks = sorted(p.stem for p in (ROOT / "docs" / "runbooks").glob("*.md"))
    assert len(runbooks) > 10
    missing = [name for name in runbooks if f'href="runbooks/{name}.html"' not in home]
    assert not missing, f"runbooks not in the book's navigation: {missing}"
    for diagram in sorted((ROOT / "diagrams").glob("*.py")):
        assert (site / "diagrams" / f"{diagram.stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
