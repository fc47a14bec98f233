"""`task configure` checks the Cloudflare API token for tunnel routes before writing the site file.

Against homelab_common.cloudflare_fake: a FAKE of Cloudflare's v4 API on 127.0.0.1 (not Cloudflare), built from its
published API documentation; the API URL is the ``--cloudflare-api-url`` setting.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_configure_and_up import FOUND, KEY, _args

from homelab_bootstrap import configure
from homelab_common.cloudflare import DNS_EDIT, TUNNEL_EDIT, TUNNEL_READ, ZONE_READ
from homelab_common.cloudflare_fake import FakeCloudflare, fake_cloudflare
from homelab_common.site import load_site

ZONE = "lab.example.com"
ACCOUNT = "0123456789abcdef0123456789abcdef"
TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    with fake_cloudflare() as fake:
        fake.add_zone(ZONE)
        fake.add_tunnel(ACCOUNT, TUNNEL)
        fake.add_token("good")
        fake.add_token("no-tunnel-edit", frozenset({ZONE_READ, DNS_EDIT, TUNNEL_READ}))
        yield fake


def files(tmp_path: Path) -> dict[str, Path]:
    tunnel = tmp_path / "tunnel-token"
    tunnel.write_text(base64.b64encode(json.dumps({"a": ACCOUNT, "t": TUNNEL, "s": "c2VjcmV0"}).encode()).decode())
    out = {"tunnel": tunnel}
    for name in ("good", "no-tunnel-edit"):
        out[name] = tmp_path / name
        out[name].write_text(name + "\n")
    return out


def flags(tmp_path: Path, cf: FakeCloudflare, token: Path) -> list[str]:
    paths = files(tmp_path)
    argv = ["--site", str(tmp_path / "site.yaml"), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway"]
    argv += ["10.77.0.1", "--domain", ZONE, "--tunnel-token-file", str(paths["tunnel"])]
    return [*argv, "--routes-token-file", str(token), "--cloudflare-api-url", cf.url]


def test_flags_check_the_token_and_take_the_ids_from_the_tunnel_token(tmp_path: Path, cf: FakeCloudflare) -> None:
    token = files(tmp_path)["good"]
    out = io.StringIO()
    assert configure.configure(_args(*flags(tmp_path, cf, token)), io.StringIO(), out, FOUND) == 0
    routes = load_site(tmp_path / "site.yaml").exposure.cloudflare_tunnel.routes  # type: ignore[union-attr]
    assert routes is not None
    assert (routes.account_id, routes.tunnel_id, routes.domain) == (ACCOUNT, TUNNEL, ZONE)
    assert "good" not in (tmp_path / "site.yaml").read_text().replace(str(token), "")  # a reference, never the token
    assert "can publish" in out.getvalue()
    assert cf.count("POST", "/dns_records") == 1
    assert cf.count("DELETE", "/dns_records") == 1  # the probe record is gone again
    assert cf.zone_records(ZONE) == []


def test_flags_name_the_missing_permission_and_write_nothing(tmp_path: Path, cf: FakeCloudflare) -> None:
    token = files(tmp_path)["no-tunnel-edit"]
    out = io.StringIO()
    assert configure.configure(_args(*flags(tmp_path, cf, token)), io.StringIO(), out, FOUND) == 1
    assert f"exposure.cloudflare_tunnel.routes.api_token: the API token lacks {TUNNEL_EDIT}" in out.getvalue()
    assert not (tmp_path / "site.yaml").exists()


def test_wizard_asks_again_until_the_token_can_publish(tmp_path: Path, cf: FakeCloudflare) -> None:
    paths = files(tmp_path)
    answers = ["lab.example.com", "", "", "", "", "", "", "", "", "node1", "52:54:00:00:00:01", "", "", "", ""]
    answers += ["", str(paths["tunnel"]), str(paths["no-tunnel-edit"]), "", "", ""]  # zone, ids from the tunnel token
    answers += [str(paths["good"]), ""]
    out = io.StringIO()
    args = _args("--site", str(tmp_path / "site.yaml"), "--cloudflare-api-url", cf.url)
    assert configure.configure(args, io.StringIO("\n".join(answers) + "\n"), out, FOUND) == 0
    assert f"the API token lacks {TUNNEL_EDIT}" in out.getvalue()
    written = yaml.safe_load((tmp_path / "site.yaml").read_text())
    assert written["exposure"]["cloudflare_tunnel"]["routes"] == {
        "domain": ZONE,
        "account_id": ACCOUNT,
        "tunnel_id": TUNNEL,
        "api_token": {"file": str(paths["good"])},
    }
    assert written["ssh_keys"] == [KEY]


def test_ids_are_none_for_a_file_that_is_not_a_tunnel_token(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("not base64 json")
    assert configure.tunnel_ids(str(bad)) is None
    assert configure.tunnel_ids(str(tmp_path / "missing")) is None
