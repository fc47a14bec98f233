"""Diagrams are code: each must still render (graphviz + the `diagrams` package) to a real PNG."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_architecture_diagram_renders(tmp_path: Path) -> None:
    module = runpy.run_path(str(ROOT / "diagrams" / "architecture.py"))
    png = module["render"](tmp_path)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800
    assert height > 600
