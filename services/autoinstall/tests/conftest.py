"""Fixtures: the test site as a model and as a file."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml
from autoinstall_site import site_data
from flask import Flask

from homelab_autoinstall.api import create_app
from homelab_autoinstall.settings import Settings
from homelab_common.site import Site, parse_site
from homelab_common.testing import api_schema


@pytest.fixture
def site() -> Site:
    return parse_site(site_data())


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_data()))
    return path


@pytest.fixture
def settings(tmp_path: Path, site_file: Path) -> Settings:
    # Wake-on-LAN to loopback: no test may send packets to the site's real LAN broadcast address.
    return Settings(
        site_file=site_file,
        state_dir=tmp_path / "state",
        public_url="http://10.77.0.2:8081",
        wol_broadcast=IPv4Address("127.0.0.1"),
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def autoinstall_api_schema(app: Flask) -> object:
    return api_schema(app)
