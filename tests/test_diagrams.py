"""Diagrams are code: each must still render (graphviz + the `diagrams` package) to a real PNG of a readable size."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = sorted((ROOT / "diagrams").glob("*.py"))


def test_every_flow_has_a_diagram() -> None:
    names = {p.stem for p in DIAGRAMS}
    assert {"architecture", "pxe_boot", "bootstrap_gitops", "dns_update", "backup_restore"} <= names


@pytest.mark.parametrize("source", DIAGRAMS, ids=[p.stem for p in DIAGRAMS])
def test_diagram_renders(source: Path, tmp_path: Path) -> None:
    module = runpy.run_path(str(source))
    png = module["render"](tmp_path)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800
    assert height > 600
