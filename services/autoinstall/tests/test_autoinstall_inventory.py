"""The inventory: every site-file mistake is rejected at load naming the machine and field; edits are picked up."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from autoinstall_site import site_data

from homelab_autoinstall.inventory import Inventory
from homelab_common.site import SiteError


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def problems(tmp_path: Path, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SiteError) as info:
        Inventory(write(tmp_path / "site.yaml", data))
    return dict(info.value.problems)


def test_inventory_loads_machines_with_normalised_macs(site_file: Path) -> None:
    inventory = Inventory(site_file)
    assert [m.mac for m in inventory.site.machines][2] == "52:54:00:12:34:58"
    node3 = inventory.machine("52-54-00-12-34-58")
    assert node3 is not None
    assert node3.name == "node3"
    assert inventory.machine("5254.0012.3456") is not None
    assert inventory.machine("52:54:00:ff:ff:ff") is None
    assert inventory.machine("not-a-mac") is None


def test_duplicate_mac_is_rejected_naming_the_machine(tmp_path: Path) -> None:
    data = site_data()
    data["machines"][2]["mac"] = "52:54:00:12:34:56".upper()
    found = problems(tmp_path, data)
    assert "machines[2].mac" in found
    assert "machines[0]" in found["machines[2].mac"]


def test_duplicate_ip_and_name_are_rejected(tmp_path: Path) -> None:
    data = site_data()
    data["machines"][1]["ip"] = "10.77.0.11"
    data["machines"][2]["name"] = "node1"
    assert {"machines[1].ip", "machines[2].name"} <= set(problems(tmp_path, data))


def test_bad_mac_is_rejected_naming_the_field(tmp_path: Path) -> None:
    data = site_data()
    data["machines"][1]["mac"] = "52:54:00:zz:00:01"
    assert problems(tmp_path, data) == {"machines[1].mac": "not a MAC address"}


def test_ip_outside_subnet_is_rejected(tmp_path: Path) -> None:
    data = site_data()
    data["machines"][0]["ip"] = "192.168.1.5"
    found = problems(tmp_path, data)
    assert "outside lan.subnet" in found["machines[0].ip"]


def test_bad_edit_keeps_last_good_inventory_and_reports_it(site_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    inventory = Inventory(site_file)
    data = site_data()
    data["machines"][0]["mac"] = "bogus"
    write(site_file, data)
    os.utime(site_file, ns=(1, 1))  # a different stamp even if the write landed in the same clock tick
    with caplog.at_level(logging.ERROR):
        assert inventory.machine("52:54:00:12:34:56") is not None
    assert inventory.error is not None
    assert "machines[0].mac" in inventory.error
    assert any(
        "machines[0].mac: not a MAC address" in p for r in caplog.records for p in r.__dict__.get("problems", [])
    )
    data = site_data()
    data["machines"].append({"name": "node4", "mac": "52:54:00:12:34:59", "ip": "10.77.0.14"})
    write(site_file, data)
    os.utime(site_file, ns=(2, 2))
    assert inventory.machine("52:54:00:12:34:59") is not None
    assert inventory.error is None
