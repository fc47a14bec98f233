"""The HTTP API through flask's test client, on a real SQLite file: the install flow, refusals, reinstall,
restarts, concurrency and the secrets that must never reach a log line."""

from __future__ import annotations

import base64
import errno
import io
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_network

import pytest
import yaml
from autoinstall_site import site_data
from flask import Flask
from flask.testing import FlaskClient

from homelab_autoinstall.alarms import alarm_sinks
from homelab_autoinstall.api import create_app
from homelab_autoinstall.service import wol_target
from homelab_autoinstall.settings import Settings
from homelab_common.k8s.testing import KubeEmulator, kube
from homelab_common.logs import JsonFormatter
from homelab_common.site import Site, SiteError
from homelab_common.trust import is_trusted

__all__ = ["kube"]

NODE1 = "52:54:00:12:34:56"
NODE3 = "52:54:00:12:34:58"


def arm(client: FlaskClient, mac: str) -> None:
    response = client.post(f"/api/v1/machines/{mac}/arm")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["armed_until"] is not None


def seed_path(client: FlaskClient, mac: str, *, arming: bool = True) -> str:
    """The path part of the seed URL pxe would be given for ``mac`` (after arming its install window)."""
    if arming:
        arm(client, mac)
    body = client.get(f"/api/v1/boot/{mac}").get_json()
    assert body["action"] == "install", body
    url = body["seed_url"]
    assert url.startswith("http://10.77.0.2:8081/seed/")
    return url.removeprefix("http://10.77.0.2:8081")


def state_of(client: FlaskClient, mac: str) -> str:
    return str(client.get(f"/api/v1/machines/{mac}").get_json()["state"])


def metric(client: FlaskClient, name: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def nonce_of(user_data: bytes | str) -> str:
    """The nonce the user-data's last late-command reports back with."""
    command = yaml.safe_load(user_data)["autoinstall"]["late-commands"][-1]
    match = re.search(r"--data nonce=([A-Za-z0-9_-]+) ", command)
    assert match is not None, command
    return match.group(1)


def report_installed(client: FlaskClient, seed: str, nonce: str) -> int:
    return client.post(seed + "installed", data={"nonce": nonce}).status_code


def install(client: FlaskClient, mac: str) -> None:
    seed = seed_path(client, mac)
    assert client.get(seed + "meta-data").status_code == 200
    user = client.get(seed + "user-data")
    assert user.status_code == 200
    assert report_installed(client, seed, nonce_of(user.data)) == 200


def test_boot_decision_for_a_new_machine_is_install_with_a_seed_url(app: Flask) -> None:
    client = app.test_client()
    for notation in (
        "52:54:00:12:34:56",
        "52-54-00-12-34-56",
        "5254.0012.3456",
        "525400123456",
        "52:54:00:12:34:56".upper(),
    ):
        arm(client, notation)
        body = client.get(f"/api/v1/boot/{notation}").get_json()
        assert body["action"] == "install"
        assert body["machine"] == "node1"
        assert body["arch"] == "amd64"
        assert re.fullmatch(r"http://10\.77\.0\.2:8081/seed/52-54-00-12-34-56/[A-Za-z0-9_-]{43}/", body["seed_url"])
    assert client.get("/api/v1/machines/52:54:00:12:34:57").get_json()["arch"] == "arm64"


def test_unknown_mac_gets_404_and_bad_mac_400(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/v1/boot/52:54:00:99:99:99").status_code == 404
    response = client.get("/api/v1/boot/not-a-mac")
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"] == "mac"


def test_public_url_defaults_to_the_request_host(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings.model_copy(update={"public_url": None}))
    arm(app.test_client(), NODE1)
    body = app.test_client().get(f"/api/v1/boot/{NODE1}", base_url="http://10.77.0.9:8081").get_json()
    assert body["seed_url"].startswith("http://10.77.0.9:8081/seed/52-54-00-12-34-56/")
    assert "HOMELAB_AUTOINSTALL_PUBLIC_URL" not in caplog.text
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            app.test_client().get(f"/api/v1/boot/{NODE1}", base_url="http://127.0.0.1:8081")
    assert len([r for r in caplog.records if "HOMELAB_AUTOINSTALL_PUBLIC_URL" in r.message]) == 1


def test_full_install_flow_ends_in_local_boot(app: Flask) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    meta = client.get(seed + "meta-data")
    assert meta.status_code == 200
    assert yaml.safe_load(meta.data) == {"instance-id": "homelab-node1-1", "local-hostname": "node1"}
    assert state_of(client, NODE1) == "pending"
    user = client.get(seed + "user-data")
    assert user.status_code == 200
    assert user.mimetype == "text/cloud-config"
    document = yaml.safe_load(user.data)["autoinstall"]
    assert document["reporting"]["hook"]["endpoint"] == "http://10.77.0.2:8081" + seed + "events"
    nonce = nonce_of(user.data)
    assert (
        document["late-commands"][-1] == f"curl -fsS -X POST --data nonce={nonce} http://10.77.0.2:8081{seed}installed"
    )
    assert state_of(client, NODE1) == "installing"
    # while installing, a PXE boot still gets the seed URL (its user-data fetch would raise the alarm)
    assert client.get(f"/api/v1/boot/{NODE1}").get_json()["seed_url"] == "http://10.77.0.2:8081" + seed
    assert client.get(seed + "vendor-data").status_code == 200
    assert yaml.safe_load(client.get(seed + "network-config").data)["version"] == 2
    event = {"event_type": "finish", "name": "subiquity/Install", "result": "SUCCESS", "origin": "curtin"}
    assert client.post(seed + "events", json=event).status_code == 200
    assert report_installed(client, seed, nonce) == 200
    assert state_of(client, NODE1) == "installed"
    assert client.get(f"/api/v1/boot/{NODE1}").get_json() == {"action": "local", "machine": "node1", "arch": "amd64"}
    assert client.get(seed + "user-data").status_code == 403  # the token is spent
    assert client.post(seed + "events", json={"event_type": "finish", "name": "subiquity/Late"}).status_code == 200
    events = client.get("/api/v1/events").get_json()
    node1 = [(e["kind"], e["from_state"], e["to_state"]) for e in events if e["machine"] == "node1"]
    assert node1 == [
        ("registered", None, "pending"),
        ("armed", "pending", "pending"),
        ("state", "pending", "installing"),
        ("installer", None, None),
        ("state", "installing", "installed"),
        ("installer", None, None),
    ]
    installer = next(e for e in events if e["kind"] == "installer")
    assert installer["detail"]["result"] == "SUCCESS"
    assert installer["mac"] == NODE1


def test_events_since_returns_only_newer_events(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/api/v1/events").get_json()
    assert len(first) == 3  # three machines registered
    last = first[-1]["id"]
    assert client.get(f"/api/v1/events?since={last}").get_json() == []
    client.post(f"/api/v1/machines/{NODE3}/reinstall")
    newer = client.get(f"/api/v1/events?since={last}").get_json()
    assert [(e["kind"], e["machine"]) for e in newer] == [("reinstall", "node3")]
    assert client.get("/api/v1/events?limit=1").get_json() == first[:1]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s.replace("52-54-00-12-34-56", "52-54-00-99-99-99"), "unknown-machine"),
        (lambda s: s.replace("52-54-00-12-34-56", "garbage"), "unknown-machine"),
        (lambda s: s[:-5] + "AAAA/", "bad-token"),
        (lambda s: s.replace("52-54-00-12-34-56", "52-54-00-12-34-58"), "bad-token"),  # another machine's MAC
    ],
)
def test_wrong_seed_url_is_refused_logged_and_counted(
    app: Flask, caplog: pytest.LogCaptureFixture, mutate: object, reason: str
) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    token = seed.rstrip("/").rsplit("/", 1)[1]
    bad = mutate(seed)  # type: ignore[operator]
    before = metric(client, f'homelab_autoinstall_seed_refusals_total{{reason="{reason}"}}')
    with caplog.at_level(logging.INFO):
        response = client.get(bad + "user-data")
    assert response.status_code == 403
    assert response.get_json() == {"error": "forbidden", "message": "refused"}
    assert metric(client, f'homelab_autoinstall_seed_refusals_total{{reason="{reason}"}}') == before + 1
    refusal = next(r for r in caplog.records if r.message == "seed request refused")
    assert refusal.__dict__["reason"] == reason
    assert token not in caplog.text
    assert state_of(client, NODE1) == "pending"


def test_unknown_seed_file_is_refused_without_logging_the_token(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    token = seed.rstrip("/").rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO):
        assert client.get(seed + "../../etc/passwd").status_code in (403, 404)
        assert client.get(seed + "kickstart").status_code == 403
        assert client.get(seed).status_code == 403
        assert client.post(seed + "sub/dir").status_code == 403
    assert token not in caplog.text
    assert metric(client, 'homelab_autoinstall_seed_refusals_total{reason="unknown-file"}') >= 3


def test_installed_report_without_a_fetched_config_is_refused(app: Flask) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    assert client.post(seed + "installed").status_code == 403
    assert state_of(client, NODE1) == "pending"


@pytest.mark.parametrize("nonce", ["", "guessed-nonce-000000000000000000"])
def test_installed_report_without_the_fetchs_nonce_is_refused(app: Flask, nonce: str) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    assert client.get(seed + "user-data").status_code == 200
    assert report_installed(client, seed, nonce) == 403
    assert state_of(client, NODE1) == "installing"
    assert metric(client, 'homelab_autoinstall_seed_refusals_total{reason="bad-nonce"}') >= 1


def test_pending_machine_gets_no_seed_url_and_no_seed_until_armed(app: Flask) -> None:
    client = app.test_client()
    assert client.get(f"/api/v1/boot/{NODE1}").get_json() == {"action": "wait", "machine": "node1", "arch": "amd64"}
    store = app.extensions["autoinstall"].store
    record = store.get(NODE1)
    unarmed = f"/seed/52-54-00-12-34-56/{record.seed_token}/"
    assert client.get(unarmed + "meta-data").status_code == 403
    assert client.get(unarmed + "user-data").status_code == 403
    assert metric(client, 'homelab_autoinstall_seed_refusals_total{reason="not-armed"}') >= 2
    seed = seed_path(client, NODE1)
    assert seed != unarmed  # arming makes a fresh token
    assert client.get(unarmed + "meta-data").status_code == 403
    assert client.get(seed + "meta-data").status_code == 200


def test_install_window_expires(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE1)
    later = time.time() + 1801  # the default window is 1800 s
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get(f"/api/v1/boot/{NODE1}").get_json()["action"] == "wait"
    assert client.get(seed + "user-data").status_code == 403
    assert client.get(f"/api/v1/machines/{NODE1}").get_json()["armed_until"] is None


def test_arming_is_for_trusted_sources_and_not_for_installed_machines(app: Flask) -> None:
    client = app.test_client()
    lan = {"REMOTE_ADDR": "10.77.0.200"}
    assert client.post(f"/api/v1/machines/{NODE1}/arm", environ_base=lan).status_code == 403
    assert client.post("/api/v1/machines/52:54:00:99:99:99/arm").status_code == 404
    response = client.post(f"/api/v1/machines/{NODE1}/arm?seconds=10")
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"] == "query.seconds"
    install(client, NODE1)
    response = client.post(f"/api/v1/machines/{NODE1}/arm")
    assert response.status_code == 409
    assert "reinstall" in response.get_json()["message"]


def test_second_user_data_fetch_is_refused_burns_the_window_and_raises_an_alarm(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    seed = seed_path(client, NODE3)
    first = client.get(seed + "user-data", environ_base={"REMOTE_ADDR": "10.77.0.50"})
    assert first.status_code == 200
    alarms = metric(client, "homelab_autoinstall_seed_alarms_total")
    with caplog.at_level(logging.WARNING):
        second = client.get(seed + "user-data", environ_base={"REMOTE_ADDR": "10.77.0.66"})
    assert second.status_code == 403
    assert second.get_json() == {"error": "forbidden", "message": "refused"}
    message = "seed for node3 fetched twice, from 10.77.0.50 and 10.77.0.66"
    assert any(r.message == message and r.levelno == logging.WARNING for r in caplog.records)
    assert metric(client, "homelab_autoinstall_seed_alarms_total") == alarms + 1
    alarm = [e for e in client.get("/api/v1/events").get_json() if e["kind"] == "alarm"]
    assert [e["message"] for e in alarm] == [message + "; install window burned, arm it again"]
    assert alarm[0]["detail"] == {"first": "10.77.0.50", "second": "10.77.0.66"}
    # neither fetcher can finish, and nothing more is served until someone arms the machine again
    assert report_installed(client, seed, nonce_of(first.data)) == 403
    assert client.get(seed + "meta-data").status_code == 403
    assert state_of(client, NODE3) == "pending"
    assert client.get(f"/api/v1/boot/{NODE3}").get_json()["action"] == "wait"


def test_reinstall_resets_to_pending_with_fresh_token_and_nonce(app: Flask) -> None:
    client = app.test_client()
    old_seed = seed_path(client, NODE3)
    old_text = client.get(old_seed + "user-data").data
    assert report_installed(client, old_seed, nonce_of(old_text)) == 200
    response = client.post(f"/api/v1/machines/{NODE3}/reinstall")
    assert response.status_code == 200
    assert response.get_json()["state"] == "pending"
    assert response.get_json()["generation"] == 2
    new_seed = seed_path(client, NODE3)
    assert new_seed != old_seed
    assert client.get(old_seed + "user-data").status_code == 403
    new_text = client.get(new_seed + "user-data").data
    assert nonce_of(new_text) != nonce_of(old_text)
    assert yaml.safe_load(client.get(new_seed + "meta-data").data)["instance-id"] == "homelab-node3-2"
    assert "token" not in decoded_k3s_config(new_text.decode())
    assert client.post(f"/api/v1/machines/{NODE3}/reinstall").status_code == 200
    assert client.post("/api/v1/machines/52:54:00:99:99:99/reinstall").status_code == 404


def decoded_k3s_config(user_data: str) -> dict[str, object]:
    for command in yaml.safe_load(user_data)["autoinstall"]["late-commands"]:
        match = re.search(r"echo (\S+) \| base64 -d > /target/etc/rancher/k3s/config.yaml", command)
        if match:
            return dict(yaml.safe_load(base64.b64decode(match.group(1))))
    raise AssertionError("no k3s config")


def test_state_survives_restart_across_two_app_instances(settings: Settings) -> None:
    first = create_app(settings).test_client()
    seed = seed_path(first, NODE1)
    user = first.get(seed + "user-data")
    assert user.status_code == 200
    second = create_app(settings).test_client()
    assert state_of(second, NODE1) == "installing"
    assert second.get(seed + "meta-data").status_code == 200  # same token after the restart
    assert report_installed(second, seed, nonce_of(user.data)) == 200
    assert state_of(first, NODE1) == "installed"
    assert first.get(f"/api/v1/boot/{NODE1}").get_json()["action"] == "local"
    assert (settings.state_dir / "autoinstall.sqlite3").stat().st_mode & 0o077 == 0


def test_concurrent_requests_move_a_machine_once(settings: Settings) -> None:
    apps = [create_app(settings), create_app(settings)]
    seed = seed_path(apps[0].test_client(), NODE1)
    results: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(12)
    nonce: list[str] = []

    def fetch(app: Flask, what: str) -> None:
        client = app.test_client()
        start.wait(timeout=60)
        if what == "get":
            response = client.get(seed + "meta-data")
        else:
            response = client.post(seed + "installed", data={"nonce": nonce[0]})
        status = response.status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=fetch, args=(apps[i % 2], "get")) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * 12
    nonce.append(nonce_of(apps[1].test_client().get(seed + "user-data").data))
    events = apps[1].test_client().get("/api/v1/events").get_json()
    assert [e["to_state"] for e in events if e["kind"] == "state"] == ["installing"]
    results.clear()
    start = threading.Barrier(12)
    threads = [threading.Thread(target=fetch, args=(apps[i % 2], "post")) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [200] + [403] * 11
    events = apps[0].test_client().get("/api/v1/events").get_json()
    assert [e["to_state"] for e in events if e["kind"] == "state"] == ["installing", "installed"]


def test_source_ip_check_serves_only_the_machines_own_address(settings: Settings) -> None:
    client = create_app(settings.model_copy(update={"check_source_ip": True})).test_client()
    seed = seed_path(client, NODE1)
    assert client.get(seed + "meta-data", environ_base={"REMOTE_ADDR": "10.77.0.200"}).status_code == 403
    assert client.get(seed + "meta-data", environ_base={"REMOTE_ADDR": "10.77.0.11"}).status_code == 200
    assert metric(client, 'homelab_autoinstall_seed_refusals_total{reason="source-ip"}') >= 1


def test_metrics_count_machines_fetches_and_installs(app: Flask) -> None:
    client = app.test_client()
    installs = metric(client, "homelab_autoinstall_installs_completed_total")
    fetches = metric(client, 'homelab_autoinstall_seed_fetches_total{file="user-data"}')
    assert metric(client, 'homelab_autoinstall_machines{state="pending"}') == 3
    install(client, NODE1)
    assert metric(client, 'homelab_autoinstall_machines{state="pending"}') == 2
    assert metric(client, 'homelab_autoinstall_machines{state="installed"}') == 1
    assert metric(client, "homelab_autoinstall_installs_completed_total") == installs + 1
    assert metric(client, 'homelab_autoinstall_seed_fetches_total{file="user-data"}') == fetches + 1


def test_a_machine_added_to_the_site_file_is_registered(app: Flask, settings: Settings) -> None:
    client = app.test_client()
    data = site_data()
    data["machines"].append({"name": "node4", "mac": "52:54:00:12:34:59", "ip": "10.77.0.14", "role": "agent"})
    settings.site_file.write_text(yaml.safe_dump(data))
    os.utime(settings.site_file, ns=(5, 5))
    assert client.get("/api/v1/boot/52:54:00:12:34:59").get_json()["action"] == "wait"
    assert [m["name"] for m in client.get("/api/v1/machines").get_json()] == ["node1", "node2", "node3", "node4"]
    settings.site_file.write_text("machines: [")
    os.utime(settings.site_file, ns=(6, 6))
    assert client.get("/readyz").status_code == 503
    assert client.get("/api/v1/boot/52:54:00:12:34:59").status_code == 200  # last good inventory kept
    arm(client, "52:54:00:12:34:59")
    assert client.get("/api/v1/boot/52:54:00:12:34:59").get_json()["action"] == "install"


def test_bad_site_file_stops_create_app_naming_the_field(settings: Settings) -> None:
    data = site_data()
    data["machines"][1]["ip"] = "10.88.0.5"
    settings.site_file.write_text(yaml.safe_dump(data))
    with pytest.raises(SiteError, match=r"machines\[1\]\.ip: 10\.88\.0\.5 is outside lan\.subnet"):
        create_app(settings)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log line as the service writes it (JSON, extras included), at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("autoinstall"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)


def test_secrets_never_reach_the_logs(app: Flask, json_logs: io.StringIO) -> None:
    client = app.test_client()
    seeds = {mac: seed_path(client, mac) for mac in (NODE1, NODE3)}
    nonces = []
    for seed in seeds.values():
        for file in ("meta-data", "user-data", "vendor-data", "network-config"):
            text = client.get(seed + file).get_data(as_text=True)
            if file == "user-data":
                nonces.append(nonce_of(text))
        client.post(seed + "events", json={"event_type": "start", "name": "subiquity/Install", "result": "FAIL"})
        client.post(seed + "installed", data={"nonce": "wrong"})
        client.post(seed + "installed", data={"nonce": nonces[-1]})
        client.get(seed + "user-data")  # refused now
    client.post(f"/api/v1/machines/{NODE1}/reinstall")
    nonces.append(nonce_of(client.get(seed_path(client, NODE1) + "user-data").data))
    client.get(seeds[NODE3].replace("52-54-00-12-34-58", "52-54-00-12-34-56") + "user-data")
    client.get(seeds[NODE3] + "nope")
    logs = json_logs.getvalue()
    assert "seed request refused" in logs
    assert '"to_state": "installed"' in logs
    assert '"machine": "node3"' in logs
    secrets = [*nonces, *(s.rstrip("/").rsplit("/", 1)[1] for s in seeds.values())]
    secrets.append(seed_path(client, NODE1).rstrip("/").rsplit("/", 1)[1])
    assert len(secrets) == 6
    for secret in secrets:
        assert secret not in logs


def test_events_since_beyond_sqlite_integers_is_a_400(app: Flask) -> None:
    response = app.test_client().get("/api/v1/events?since=24925950993940885504")
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"] == "query.since"


def test_boot_and_reinstall_only_from_this_host_by_default(app: Flask) -> None:
    client = app.test_client()
    lan = {"REMOTE_ADDR": "10.77.0.200"}
    response = client.get(f"/api/v1/boot/{NODE1}", environ_base=lan)
    assert response.status_code == 403
    assert "seed_url" not in response.get_data(as_text=True)
    assert client.post(f"/api/v1/machines/{NODE1}/reinstall", environ_base=lan).status_code == 403
    assert metric(client, 'homelab_autoinstall_seed_refusals_total{reason="untrusted-source"}') >= 2
    assert client.get(f"/api/v1/machines/{NODE1}", environ_base=lan).status_code == 200  # no secrets: open
    assert client.get("/api/v1/events", environ_base=lan).status_code == 200
    assert client.get(f"/api/v1/boot/{NODE1}", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_trusted_networks_open_boot_decisions_to_them(settings: Settings) -> None:
    client = create_app(settings.model_copy(update={"trusted_networks": [ip_network("10.77.0.0/24")]})).test_client()
    assert client.get(f"/api/v1/boot/{NODE1}", environ_base={"REMOTE_ADDR": "10.77.0.200"}).status_code == 200
    assert client.get(f"/api/v1/boot/{NODE1}", environ_base={"REMOTE_ADDR": "10.78.0.200"}).status_code == 403


def test_this_hosts_own_address_is_trusted() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.2", 9))  # no packet is sent; picks a local source address
        own = s.getsockname()[0]
    assert is_trusted(own, [])
    assert is_trusted("127.0.0.1", [])
    assert not is_trusted("192.0.2.55", [])  # TEST-NET-1: never a local address here
    assert is_trusted("192.0.2.55", [ip_network("192.0.2.0/24")])
    assert not is_trusted("not-an-ip", [])
    assert not is_trusted(None, [])


def test_installer_events_echoing_our_commands_are_stored_without_secrets(app: Flask, json_logs: io.StringIO) -> None:
    """subiquity describes each late-command by its command line: the seed URL, the nonce, the encoded files."""
    client = app.test_client()
    seed = seed_path(client, NODE1)
    user_data = yaml.safe_load(client.get(seed + "user-data").data)["autoinstall"]
    token = seed.rstrip("/").rsplit("/", 1)[1]
    nonce = nonce_of(yaml.safe_dump({"autoinstall": user_data}))
    for i, command in enumerate(user_data["late-commands"]):
        event = {"event_type": "start", "name": f"subiquity/Late/run/command_{i}", "description": command,
                 "result": "FAIL", "origin": "curtin"}  # fmt: skip
        assert client.post(seed + "events", json=event).status_code == 200
    served = client.get("/api/v1/events").get_data(as_text=True)
    assert "subiquity/Late/run/command_5" in served
    assert "curtin in-target --target=/target" in served
    encoded_config = re.search(r"echo (\S+) \| base64 -d > /target/etc/rancher/k3s", served)
    assert encoded_config is not None
    assert encoded_config.group(1) == "[redacted]"
    for secret in (token, nonce):
        assert secret not in served
        assert secret not in json_logs.getvalue()


def test_wake_sends_the_magic_packet_to_the_broadcast_address(settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(30)
        port = listener.getsockname()[1]
        client = create_app(settings.model_copy(update={"wol_port": port})).test_client()
        response = client.post("/api/v1/machines/5254.0012.3456/wake")
        assert response.status_code == 202
        assert response.get_json() == {"machine": "node1", "mac": NODE1, "broadcast": "127.0.0.1", "port": port}
        packet, _ = listener.recvfrom(1024)
    assert packet == b"\xff" * 6 + bytes.fromhex("525400123456") * 16
    assert metric(client, "homelab_autoinstall_wol_sent_total") >= 1


def test_wake_refuses_unknown_machines_and_untrusted_sources(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/api/v1/machines/52:54:00:99:99:99/wake").status_code == 404
    assert client.post(f"/api/v1/machines/{NODE1}/wake", environ_base={"REMOTE_ADDR": "10.77.0.200"}).status_code == 403


def test_wake_that_cannot_be_sent_is_a_503(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(mac: str, broadcast: str, port: int) -> bytes:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr("homelab_autoinstall.service.wake_on_lan", unreachable)
    response = app.test_client().post(f"/api/v1/machines/{NODE1}/wake")
    assert response.status_code == 503
    assert "Network is unreachable" in response.get_json()["message"]


def test_wake_goes_to_the_lans_directed_broadcast_by_default(site: Site) -> None:
    assert wol_target(site) == "10.77.0.255"


def test_alarm_is_a_kubernetes_event_on_the_pod_in_cluster(settings: Settings, kube: KubeEmulator) -> None:
    in_cluster = settings.model_copy(update={"events_namespace": "provisioning", "pod_name": "autoinstall-0"})
    app = create_app(in_cluster, kube_client=kube.api_client())
    client = app.test_client()
    seed = seed_path(client, NODE1)
    assert client.get(seed + "user-data", environ_base={"REMOTE_ADDR": "10.77.0.11"}).status_code == 200
    assert client.get(seed + "user-data", environ_base={"REMOTE_ADDR": "10.77.0.99"}).status_code == 403
    (event,) = kube.objects("events.k8s.io/v1/events", namespace="provisioning").values()
    assert event["type"] == "Warning"
    assert event["reason"] == "SeedFetchedTwice"
    assert event["note"] == "seed for node1 fetched twice, from 10.77.0.11 and 10.77.0.99"
    assert event["regarding"]["kind"] == "Pod"
    assert event["regarding"]["name"] == "autoinstall-0"
    assert alarm_sinks(settings) == []  # outside a cluster: logs, metrics and API events only


def test_an_alarm_sink_that_fails_does_not_turn_the_refusal_into_an_error(app: Flask) -> None:
    def broken(machine: object, message: str) -> None:
        raise RuntimeError("API server down")

    app.extensions["autoinstall"].alarm_sinks = [broken]
    client = app.test_client()
    seed = seed_path(client, NODE1)
    assert client.get(seed + "user-data").status_code == 200
    assert client.get(seed + "user-data").status_code == 403
