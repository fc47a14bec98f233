from __future__ import annotations

from pathlib import Path

import pytest
from gitops_tree import SITES, build_tree


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rendered-ready copy of gitops/ and charts/ per example site (gitops_tree.build_tree)."""
    return {name: build_tree(tmp_path_factory.mktemp(name), make()) for name, make in SITES.items()}
