from __future__ import annotations

from pathlib import Path

import pytest
from rulefiles import render_rule_files


@pytest.fixture(scope="session")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_rule_files(tmp_path_factory.mktemp("rules"))
