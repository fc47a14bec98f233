"""Fixtures: the test site as a model and as a file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from autoinstall_site import site_data

from homelab_common.site import Site, parse_site


@pytest.fixture
def site() -> Site:
    return parse_site(site_data())


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_data()))
    return path
