"""The site file's backup section: validation, the 3-2-1 warning of `task up`, the repositories Secret's content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab_bootstrap import gitops, up
from homelab_bootstrap.job import BootstrapError, backup_repositories_json
from homelab_common.site import SiteError, backup_policy_warnings, parse_site

REPO = Path(__file__).resolve().parents[2]


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "site.example.yaml").read_text())
    return data


def with_backup(**backup: Any) -> dict[str, Any]:
    return example() | {"backup": backup}


NAS = {"name": "nas", "url": "sftp:backup@nas.home.arpa:/srv/restic", "password": {"env": "NAS_PW"}, "init": True}
OFFSITE = {
    "name": "offsite",
    "url": "s3:https://s3.example.net/bucket/homelab",
    "offsite": True,
    "password": {"env": "OFF_PW"},
    "env": {"AWS_ACCESS_KEY_ID": {"env": "KEY_ID"}, "AWS_SECRET_ACCESS_KEY": {"env": "KEY"}},
}


def test_a_site_without_backups_is_told_it_misses_3_2_1(tmp_path: Path) -> None:
    said: list[str] = []
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(example()))
    opts = up.Options(site_path=site, state=tmp_path / "state", source=REPO, say=said.append, is_root=lambda: False)
    with pytest.raises(up.PreflightError):  # (it stops later for other reasons: no root here)
        up.preflight(opts)
    assert "warning: backup.repositories: 0 repository(ies): 3-2-1 needs at least 2 (copies)" in said[0]
    assert "none is offsite" in said[1]


def test_two_repositories_one_offsite_meet_3_2_1() -> None:
    site = parse_site(with_backup(repositories=[NAS, OFFSITE]))
    assert backup_policy_warnings(site) == []
    only_local = parse_site(with_backup(repositories=[NAS, NAS | {"name": "usb", "url": "/mnt/usb/restic"}]))
    assert backup_policy_warnings(only_local) == [
        ("backup.repositories", "none is offsite: 3-2-1 needs one copy in another place")
    ]


def test_backup_mistakes_are_named_by_field() -> None:
    bad = with_backup(
        schedule="every night",
        check_subset="lots",
        repositories=[
            NAS | {"password": {"value": "hunter2"}},
            OFFSITE | {"name": "nas", "url": "/srv/restic"},
        ],
    )
    with pytest.raises(SiteError) as caught:
        parse_site(bad)
    fields = {field for field, _ in caught.value.problems}
    assert {"backup.schedule", "backup.check_subset", "backup.repositories[0].password"} <= fields
    good_but_contradictory = with_backup(repositories=[NAS, OFFSITE | {"url": "/srv/restic"}])
    with pytest.raises(SiteError, match=r"backup.repositories\[1\].offsite: /srv/restic is a local path"):
        parse_site(good_but_contradictory)


def test_the_repositories_secret_carries_passwords_read_from_their_references() -> None:
    site = parse_site(with_backup(repositories=[NAS, OFFSITE]))
    environ = {"NAS_PW": "pw-nas", "OFF_PW": "pw-off", "KEY_ID": "kid", "KEY": "k"}
    repos = json.loads(backup_repositories_json(site, environ))
    assert repos == [
        {"name": "nas", "url": NAS["url"], "offsite": False, "init": True, "password": "pw-nas"},
        {
            "name": "offsite",
            "url": OFFSITE["url"],
            "offsite": True,
            "init": False,
            "password": "pw-off",
            "env": {"AWS_ACCESS_KEY_ID": "kid", "AWS_SECRET_ACCESS_KEY": "k"},
        },
    ]
    with pytest.raises(BootstrapError, match=r"backup.repositories\[1\] \(offsite\): \$KEY is empty"):
        backup_repositories_json(site, environ | {"KEY": ""})


def test_the_backup_apps_values_follow_the_site() -> None:
    site = parse_site(with_backup(schedule="30 1 * * *", keep={"daily": 3}, repositories=[NAS, OFFSITE]))
    app = next(a for a in gitops.discover_apps(REPO) if a.name == "backup")
    env = gitops.app_values(app, site)["backup"]["controllers"]["main"]["containers"]["main"]["env"]
    assert env["HOMELAB_BACKUP_SCHEDULE"] == "30 1 * * *"
    assert json.loads(env["HOMELAB_BACKUP_KEEP"])["daily"] == 3
    assert gitops.enabled(app, site)
    assert not gitops.enabled(app, parse_site(with_backup(enabled=False)))
