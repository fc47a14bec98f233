"""The site file model: the example passes; every kind of mistake is named by its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab_common.site import SiteError, load_site, normalise_mac, parse_site

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn0dWkYkYf7bYV3N2W5r7mB0wq1eHj2sH0o8s5s2Jx1 admin@laptop"
GOOD: dict[str, Any] = {
    "domain": "home.arpa",
    "timezone": "Europe/Berlin",
    "lan": {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "dns": ["10.77.0.1"]},
    "ssh_keys": [KEY],
    "k3s": {"version": "v1.33.5+k3s1", "api_vip": "10.77.0.40", "lb_pool": "10.77.0.50-10.77.0.70"},
    "machines": [
        {"name": "node1", "mac": "52:54:00:00:00:01", "ip": "10.77.0.11", "disk": "/dev/vda"},
        {"name": "node2", "mac": "52-54-00-00-00-02", "ip": "10.77.0.12", "role": "agent"},
    ],
}


def problems_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SiteError) as info:
        parse_site(data)
    return dict(info.value.problems)


def test_good_site_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    site = load_site(path)
    assert site.machines[1].mac == "52:54:00:00:00:02"
    assert site.machines[1].disk == "/dev/sda"
    assert site.first_server is not None
    assert site.first_server.name == "node1"
    assert site.machine_by_mac("5254.0000.0009") is None
    assert site.machine_by_mac("525400000001") == site.machines[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"),
        ("5254.00ab.cdef", "52:54:00:ab:cd:ef"),
        ("525400abcdef", "52:54:00:ab:cd:ef"),
    ],
)
def test_mac_notations_normalise(raw: str, expected: str) -> None:
    assert normalise_mac(raw) == expected


@pytest.mark.parametrize("raw", ["52:54:00:ab:cd", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef:01", "52 54 00 ab cd ef"])
def test_bad_macs_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        normalise_mac(raw)


def test_bad_mac_is_named_by_its_position() -> None:
    data = copy.deepcopy(GOOD)
    data["machines"][1]["mac"] = "not-a-mac"
    assert problems_of(data) == {"machines[1].mac": "not a MAC address"}


def test_duplicates_and_addresses_outside_the_subnet_are_all_reported() -> None:
    data = copy.deepcopy(GOOD)
    data["machines"].append({"name": "node1", "mac": "52:54:00:00:00:01", "ip": "10.99.0.5"})
    found = problems_of(data)
    assert "already used by machines[0]" in found["machines[2].name"]
    assert "already used by machines[0]" in found["machines[2].mac"]
    assert "outside lan.subnet" in found["machines[2].ip"]


def test_typo_in_a_key_is_rejected() -> None:
    data = copy.deepcopy(GOOD)
    data["machines"][0]["rol"] = "agent"
    assert "machines[0].rol" in problems_of(data)


def test_no_server_and_a_bad_pool_are_named() -> None:
    data = copy.deepcopy(GOOD)
    for machine in data["machines"]:
        machine["role"] = "agent"
    data["k3s"]["lb_pool"] = "10.77.0.70-10.77.0.50"
    found = problems_of(data)
    assert "no machine has role server" in found["machines"]
    assert "ascending range" in found["k3s.lb_pool"]


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="task configure"):
        load_site(tmp_path / "absent.yaml")


def test_yaml_syntax_error_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("lan: [unclosed\n")
    with pytest.raises(SiteError, match=r"\(yaml\)"):
        load_site(path)


def test_defaults_are_lan_only_with_in_cluster_ca_and_every_app_on() -> None:
    site = parse_site(GOOD)
    assert site.exposure.mode == "lan"
    assert site.certificates.mode == "ca"
    assert site.private_domain
    assert all(site.apps.model_dump().values())


PUBLIC = {
    **GOOD,
    "domain": "lab.example.com",
    "exposure": {"cloudflare_tunnel": {"token": {"env": "CF_TUNNEL_TOKEN"}}},
    "certificates": {"acme": {"email": "me@example.com", "token": {"file": "/etc/homelab/cloudflare-api-token"}}},
}


def test_public_domain_with_tokens_uses_acme_and_the_tunnel(tmp_path: Path) -> None:
    site = parse_site(PUBLIC)
    assert site.exposure.mode == "cloudflare-tunnel"
    assert site.certificates.mode == "acme"
    assert site.certificates.acme is not None
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert site.certificates.acme.token.model_copy(update={"file": token}).read() == "s3cret"
    assert site.exposure.cloudflare_tunnel is not None
    assert site.exposure.cloudflare_tunnel.token.read({"CF_TUNNEL_TOKEN": "t"}) == "t"
    with pytest.raises(LookupError, match=r"\$CF_TUNNEL_TOKEN is empty"):
        site.exposure.cloudflare_tunnel.token.read({})


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"exposure": {"cloudflare_tunnel": {"token": {"value": "abc"}}}},
            "exposure.cloudflare_tunnel.token",
            "never put",
        ),
        (
            {"exposure": {"cloudflare_tunnel": {"token": {"file": "/a", "env": "B"}}}},
            "exposure.cloudflare_tunnel.token",
            "exactly one",
        ),
        ({"certificates": {"acme": {"email": "nope", "token": {"env": "T"}}}}, "certificates.acme.email", "pattern"),
        ({"apps": {"gitea": False}}, "apps.gitea", "Extra inputs"),
        ({"apps": {"jellyfin": True}}, "apps.jellyfin", "Extra inputs"),
        ({"domain": "home.arpa"}, "certificates.acme", "private domain"),
        ({"domain": "home.arpa"}, "exposure.cloudflare_tunnel", "private domain"),
    ],
)
def test_exposure_certificates_and_apps_mistakes_are_named(change: dict[str, Any], field: str, message: str) -> None:
    data = copy.deepcopy(PUBLIC) | change
    problems = problems_of(data)
    assert field in problems, problems
    assert message in problems[field]


ROUTES = {
    "account_id": "0123456789abcdef0123456789abcdef",
    "tunnel_id": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
    "api_token": {"file": "/etc/homelab/cloudflare-dns-token"},
}


@pytest.mark.parametrize(
    ("routes", "field", "message"),
    [
        ({**ROUTES, "account_id": "acct"}, "exposure.cloudflare_tunnel.routes.account_id", "pattern"),
        ({**ROUTES, "tunnel_id": "tunnel-1"}, "exposure.cloudflare_tunnel.routes.tunnel_id", "pattern"),
        ({**ROUTES, "api_token": {"value": "x"}}, "exposure.cloudflare_tunnel.routes.api_token", "never put"),
        ({**ROUTES, "domain": "apps.home.arpa"}, "exposure.cloudflare_tunnel.routes.domain", "private domain"),
    ],
)
def test_tunnel_routes_mistakes_are_named(routes: dict[str, Any], field: str, message: str) -> None:
    data = copy.deepcopy(PUBLIC)
    data["exposure"]["cloudflare_tunnel"]["routes"] = routes
    problems = problems_of(data)
    assert field in problems, problems
    assert message in problems[field]


def test_tunnel_routes_reference_their_token_never_hold_it() -> None:
    data = copy.deepcopy(PUBLIC)
    data["exposure"]["cloudflare_tunnel"]["routes"] = {**ROUTES, "domain": "public.example.net"}
    routes = parse_site(data).exposure.cloudflare_tunnel.routes  # type: ignore[union-attr]
    assert routes is not None
    assert routes.domain == "public.example.net"
    assert str(routes.api_token.file) == "/etc/homelab/cloudflare-dns-token"


EMAIL = {
    "to": "me@example.com",
    "from": "lab@example.com",
    "smarthost": "smtp.example.com:587",
    "username": "lab@example.com",
    "password": {"file": "/etc/homelab/smtp-password"},
}


def test_email_alerts_require_tls_and_keep_from_as_written() -> None:
    site = parse_site({**GOOD, "alerting": {"email": EMAIL}})
    email = site.alerting.email
    assert email is not None
    assert (email.to, email.sender, email.require_tls) == (["me@example.com"], "lab@example.com", True)
    # the site file written back for the services (site_file_text) parses again: "from", not the Python name
    assert site.model_dump(mode="json")["alerting"]["email"]["from"] == "lab@example.com"
    assert parse_site(site.model_dump(mode="json", exclude_none=True)) == site


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"to": ["me@example.com", "me@example"]}, "alerting.email.to[1]", "'me@example' is not an e-mail address"),
        ({"from": "homelab"}, "alerting.email.from", "is not an e-mail address"),
        ({"smarthost": "smtp.example.com"}, "alerting.email.smarthost", "is not host:port"),
        ({"smarthost": "smtp.example.com:70000"}, "alerting.email.smarthost", "is not host:port"),
        ({"password": "hunter2"}, "alerting.email.password", "valid dictionary"),
        ({"password": {"value": "hunter2"}}, "alerting.email.password", "never put"),
        ({"password": None}, "alerting.email", "give both username and password"),
        ({"tls": False}, "alerting.email.tls", "Extra inputs"),
    ],
)
def test_email_mistakes_are_named(change: dict[str, Any], field: str, message: str) -> None:
    problems = problems_of({**GOOD, "alerting": {"email": {**EMAIL, **change}}})
    assert field in problems, problems
    assert message in problems[field]
