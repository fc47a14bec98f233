"""The HTTP side: boot scripts per action against a fake autoinstall server, assets, Wake-on-LAN, settings."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from prometheus_client import REGISTRY
from pxe_fakes import FakeAutoinstall

from homelab_common.settings import SettingsError, load_settings
from homelab_common.testing import api_schema
from homelab_common.wol import magic_packet
from homelab_pxe.__main__ import main
from homelab_pxe.app import create_app, start_servers
from homelab_pxe.netinfo import NetworkDetectionError
from homelab_pxe.settings import Settings

MAC = "52:54:00:12:34:56"
SEED = "http://10.77.0.2:8081/seed/52-54-00-12-34-56/tok3n/"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def autoinstall() -> Iterator[FakeAutoinstall]:
    with FakeAutoinstall() as fake:
        fake.answers[MAC] = {"action": "install", "machine": "node1", "arch": "amd64", "seed_url": SEED}
        yield fake


@pytest.fixture
def wol_receiver() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    assets, tftp = tmp_path / "assets", tmp_path / "tftp"
    (assets / "amd64").mkdir(parents=True)
    (assets / "amd64" / "vmlinuz").write_bytes(b"kernel-bytes")
    (assets / "amd64" / "initrd").write_bytes(b"initrd-bytes")
    (assets / "amd64" / "live-server.iso").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "private").write_text("secret")
    (assets / "leak").symlink_to(tmp_path / "private")
    tftp.mkdir()
    (tftp / "ipxe.efi").write_bytes(b"MZ-ipxe")
    return assets, tftp


def make_settings(dirs: tuple[Path, Path], autoinstall_url: str, **overrides: Any) -> Settings:
    assets, tftp = dirs
    values: dict[str, Any] = {
        "interface": "lo",
        "server_ip": "127.0.0.1",
        "autoinstall_url": autoinstall_url,
        "autoinstall_timeout": 2,
        "assets_dir": assets,
        "tftp_root": tftp,
        "kernel_args": "console=ttyS0",
        "tftp_workers": 1,  # no transfers here: one worker process starts fastest
        **overrides,
    }
    return load_settings(Settings, **values)


@pytest.fixture
def app(dirs: tuple[Path, Path], autoinstall: FakeAutoinstall, wol_receiver: socket.socket) -> Flask:
    settings = make_settings(dirs, autoinstall.url, wol_broadcast="127.0.0.1", wol_port=wol_receiver.getsockname()[1])
    return create_app(settings)


def script(app: Flask, mac: str = MAC) -> str:
    response = app.test_client().get("/boot.ipxe", query_string={"mac": mac, "uuid": "u-1", "arch": "x86_64"})
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def test_pending_machine_gets_the_install_script(app: Flask) -> None:
    before = counter("homelab_pxe_boot_scripts_total", action="install")
    text = script(app)
    assert text.startswith("#!ipxe\n")
    lines = text.splitlines()
    kernel = next(line for line in lines if line.startswith("kernel "))
    assert kernel.split()[1] == "http://127.0.0.1:8080/assets/amd64/vmlinuz"
    assert f"ds=nocloud;s={SEED}" in kernel.split()
    for word in ("initrd=initrd", "autoinstall", "ip=dhcp", "console=ttyS0"):
        assert word in kernel.split()
    assert "url=http://127.0.0.1:8080/assets/amd64/live-server.iso" in kernel.split()
    assert "cloud-config-url=/dev/null" not in text
    assert "initrd http://127.0.0.1:8080/assets/amd64/initrd" in lines
    assert lines[-1] == "boot"
    assert counter("homelab_pxe_boot_scripts_total", action="install") == before + 1


def test_installed_machine_boots_from_its_disk(app: Flask, autoinstall: FakeAutoinstall) -> None:
    autoinstall.answers[MAC] = {"action": "local", "machine": "node1", "arch": "amd64"}
    text = script(app)
    assert "kernel" not in text
    assert "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||" in text
    assert text.splitlines()[-1] == "exit"


def test_mac_is_normalised_before_asking_autoinstall(app: Flask, autoinstall: FakeAutoinstall) -> None:
    script(app, "52-54-00-12-34-56")
    script(app, "5254.0012.3456")
    assert autoinstall.requests == [MAC, MAC]


def test_unknown_mac_is_ignored_by_default(app: Flask) -> None:
    text = script(app, "52:54:00:99:99:99")
    assert "not in the inventory" in text
    assert "kernel" not in text
    assert text.splitlines()[-1] == "exit"
    assert "sanboot" not in text


def test_unknown_mac_boots_local_when_configured(dirs: tuple[Path, Path], autoinstall: FakeAutoinstall) -> None:
    app = create_app(make_settings(dirs, autoinstall.url, unknown_action="local"))
    text = script(app, "52:54:00:99:99:99")
    assert "sanboot --no-describe --drive 0x80" in text
    assert "kernel" not in text


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_retry(text: str) -> None:
    assert "kernel" not in text
    lines = text.splitlines()
    assert "sleep 10" in lines
    assert lines[-1] == (
        "chain --autofree --replace http://127.0.0.1:8080/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=${buildarch}"
    )


def test_unreachable_autoinstall_gets_a_wait_and_retry_script(dirs: tuple[Path, Path]) -> None:
    app = create_app(make_settings(dirs, f"http://127.0.0.1:{_closed_port()}"))
    before = counter("homelab_pxe_boot_scripts_total", action="retry")
    assert_retry(script(app))
    assert counter("homelab_pxe_boot_scripts_total", action="retry") == before + 1


@pytest.mark.parametrize(
    "answer",
    [
        "not json",
        {"action": "reinstall-everything", "machine": "node1"},
        {"action": "install", "machine": "node1", "arch": "amd64"},
        {"action": "install", "machine": "node1", "arch": "amd64", "seed_url": "http://x/${evil}/"},
        {"action": "install", "machine": "node1", "arch": "amd64", "seed_url": "http://x/a b/"},
        {"action": "install", "machine": "node 1\nshell", "arch": "amd64", "seed_url": SEED},
        {"action": "install", "machine": "node1", "arch": "../..", "seed_url": SEED},
    ],
)
def test_unusable_autoinstall_answer_never_installs(app: Flask, autoinstall: FakeAutoinstall, answer: Any) -> None:
    autoinstall.answers[MAC] = answer if isinstance(answer, str) else json.dumps(answer)
    assert_retry(script(app))


def test_autoinstall_server_error_gets_the_retry_script(app: Flask, autoinstall: FakeAutoinstall) -> None:
    autoinstall.status = 500
    assert_retry(script(app))


@pytest.mark.parametrize("query", [{}, {"mac": "not-a-mac"}, {"mac": "${mac}"}, {"mac": "52:54:00:12:34"}])
def test_bad_mac_gets_400_naming_the_parameter(app: Flask, query: dict[str, str]) -> None:
    response = app.test_client().get("/boot.ipxe", query_string=query)
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"] == "query.mac"


def test_assets_are_served(app: Flask) -> None:
    with app.test_client().get("/assets/amd64/vmlinuz") as response:
        assert response.status_code == 200
        assert response.data == b"kernel-bytes"


def test_installer_iso_is_served_in_byte_ranges(app: Flask) -> None:
    iso = bytes(range(256)) * 64
    with app.test_client().get("/assets/amd64/live-server.iso", headers={"Range": "bytes=1000-1999"}) as response:
        assert response.status_code == 206
        assert response.headers["Content-Range"] == f"bytes 1000-1999/{len(iso)}"
        assert response.data == iso[1000:2000]
    with app.test_client().get("/assets/amd64/live-server.iso", headers={"Range": "bytes=16000-"}) as response:
        assert response.status_code == 206
        assert response.data == iso[16000:]


def test_pending_machine_without_installer_assets_is_told_to_retry(
    app: Flask, dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    assets, _ = dirs
    (assets / "amd64" / "live-server.iso").unlink()
    text = script(app)
    assert "kernel" not in text
    assert "no amd64 installer here yet - asking again in" in text
    assert any("homelab-bootstrap assets" in record.getMessage() for record in caplog.records)


def test_a_file_name_too_long_for_the_file_system_is_404_not_500(app: Flask) -> None:
    for prefix in ("/assets/amd64/", "/ipxe/"):
        with app.test_client().get(prefix + "é" * 200) as response:
            assert response.status_code == 404


@pytest.mark.parametrize("path", ["/assets/leak", "/assets/../tftp/ipxe.efi", "/assets/%2e%2e/private", "/assets/x"])
def test_assets_outside_the_directory_are_404(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 404
    assert b"secret" not in response.data


def test_ipxe_binaries_are_served_over_http(app: Flask) -> None:
    with app.test_client().get("/ipxe/ipxe.efi") as response:
        assert response.data == b"MZ-ipxe"
    assert app.test_client().get("/ipxe/undionly.kpxe").status_code == 404


def test_wake_sends_the_magic_packet(app: Flask, wol_receiver: socket.socket) -> None:
    response = app.test_client().post("/api/v1/wake", json={"mac": "52-54-00-12-34-56"})
    assert response.status_code == 202
    assert response.get_json() == {"mac": MAC, "broadcast": "127.0.0.1", "port": wol_receiver.getsockname()[1]}
    assert wol_receiver.recv(200) == magic_packet(MAC)


def test_wake_from_an_untrusted_source_is_refused_and_sends_nothing(app: Flask, wol_receiver: socket.socket) -> None:
    refused = counter("homelab_pxe_wol_refused_total")
    client = app.test_client()
    response = client.post("/api/v1/wake", json={"mac": MAC}, environ_base={"REMOTE_ADDR": "192.0.2.66"})
    assert response.status_code == 403
    assert "HOMELAB_PXE_TRUSTED_NETWORKS" in response.get_json()["message"]
    assert counter("homelab_pxe_wol_refused_total") == refused + 1
    wol_receiver.settimeout(0.3)
    with pytest.raises(TimeoutError):
        wol_receiver.recv(200)


def test_wake_from_a_trusted_network_is_accepted(dirs: tuple[Path, Path], wol_receiver: socket.socket) -> None:
    port = wol_receiver.getsockname()[1]
    settings = make_settings(
        dirs, "http://127.0.0.1:1", wol_broadcast="127.0.0.1", wol_port=port, trusted_networks=["192.0.2.0/24"]
    )
    client = create_app(settings).test_client()
    response = client.post("/api/v1/wake", json={"mac": MAC}, environ_base={"REMOTE_ADDR": "192.0.2.66"})
    assert response.status_code == 202
    assert wol_receiver.recv(200) == magic_packet(MAC)


def test_pending_machine_without_an_install_window_is_told_to_wait(app: Flask, autoinstall: FakeAutoinstall) -> None:
    autoinstall.answers[MAC] = {"action": "wait", "machine": "node1", "arch": "amd64"}
    script = app.test_client().get(f"/boot.ipxe?mac={MAC}").get_data(as_text=True)
    assert "node1 is not armed for install - asking again in" in script
    assert "chain --autofree --replace" in script
    assert "kernel" not in script
    assert "seed" not in script


@pytest.mark.parametrize("body", [{"mac": "nope"}, {}, {"mac": MAC, "extra": 1}, {"mac": 5}])
def test_wake_with_bad_body_is_400(app: Flask, body: dict[str, Any]) -> None:
    response = app.test_client().post("/api/v1/wake", json=body)
    assert response.status_code == 400
    assert response.get_json()["fields"][0]["field"].startswith("body")


def test_wake_defaults_to_the_serving_lans_directed_broadcast(dirs: tuple[Path, Path]) -> None:
    app = create_app(make_settings(dirs, "http://127.0.0.1:1", wol_port=_closed_port()))
    response = app.test_client().post("/api/v1/wake", json={"mac": MAC})
    assert response.get_json()["broadcast"] == "127.255.255.255"  # lo is 127.0.0.1/8


def test_wake_cli_sends_the_packet(wol_receiver: socket.socket, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(wol_receiver.getsockname()[1])
    assert main(["wake", "52:54:00:12:34:56", "--broadcast", "127.0.0.1", "--port", port]) == 0
    assert wol_receiver.recv(200) == magic_packet(MAC)
    assert "sent Wake-on-LAN" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HOMELAB_PXE_DHCP_PORT", "abc"),
        ("HOMELAB_PXE_UNKNOWN_ACTION", "reinstall"),
        ("HOMELAB_PXE_KERNEL_ARGS", "quiet\nshell"),
        ("HOMELAB_PXE_SERVER_IP", "10.77.0.300"),
        ("HOMELAB_PXE_LAN", "10.77.0.0/33"),
        ("HOMELAB_PXE_AUTOINSTALL_URL", "ftp://x"),
        ("HOMELAB_PXE_BOOTFILE_EFI_X64", "../../etc/passwd"),
    ],
)
def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(Settings)


def test_cli_exits_2_naming_the_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOMELAB_PXE_TFTP_PORT", "seventy")
    assert main([]) == 2
    assert "HOMELAB_PXE_TFTP_PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"interface": "no-such-if0", "server_ip": None}, "HOMELAB_PXE_INTERFACE"),
        ({"interface": None, "server_ip": "192.0.2.254"}, "HOMELAB_PXE_SERVER_IP"),
        ({"interface": None, "server_ip": None, "lan": "198.51.100.0/24"}, "HOMELAB_PXE_LAN"),
    ],
)
def test_undetectable_network_names_the_setting(
    dirs: tuple[Path, Path], overrides: dict[str, Any], variable: str
) -> None:
    with pytest.raises(NetworkDetectionError, match=variable):
        create_app(make_settings(dirs, "http://127.0.0.1:1", **overrides))


def test_lan_setting_picks_the_interface_with_an_address_in_it(dirs: tuple[Path, Path]) -> None:
    app = create_app(make_settings(dirs, "http://127.0.0.1:1", interface=None, server_ip=None, lan="127.0.0.0/8"))
    runtime = app.extensions["homelab_pxe.runtime"]
    assert runtime.serving.interface == "lo"
    assert runtime.http_base == "http://127.0.0.1:8080"


def test_missing_tftp_root_fails_at_start_naming_the_variable(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    app = create_app(make_settings(dirs, "http://127.0.0.1:1", tftp_root=tmp_path / "nope", dhcp_enabled=False))
    with pytest.raises(SettingsError, match="HOMELAB_PXE_TFTP_ROOT"):
        start_servers(app)


def test_started_servers_make_the_service_ready(dirs: tuple[Path, Path]) -> None:
    app = create_app(
        make_settings(dirs, "http://127.0.0.1:1", bind_address="127.0.0.1", dhcp_port=0, proxy_port=0, tftp_port=0)
    )
    assert app.test_client().get("/readyz").status_code == 200  # nothing registered yet
    servers = start_servers(app)
    try:
        body = app.test_client().get("/readyz").get_json()
        assert body == {"status": "ready", "checks": {}}
    finally:
        for server in servers.values():
            server.stop()
    assert app.test_client().get("/readyz").status_code == 503


@pytest.fixture
def api(app: Flask) -> Any:
    return api_schema(app)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: Any) -> None:
    case.call_and_validate()


def test_empty_optional_variables_mean_detect(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAN", "INTERFACE", "SERVER_IP", "HTTP_URL", "WOL_BROADCAST"):
        monkeypatch.setenv(f"HOMELAB_PXE_{name}", "")
    settings = load_settings(Settings)
    assert (settings.lan, settings.interface, settings.server_ip, settings.http_url) == (None, None, None, None)


@pytest.mark.parametrize(("arm64_machines", "warned"), [(True, True), (False, False)])
def test_missing_arm64_boot_file_is_warned_about_only_when_arm64_machines_boot_here(
    dirs: tuple[Path, Path], caplog: pytest.LogCaptureFixture, arm64_machines: bool, warned: bool
) -> None:
    _, tftp = dirs
    (tftp / "undionly.kpxe").write_bytes(b"kpxe")  # the amd64 files are all there; snp.efi is not
    settings = make_settings(
        dirs,
        "http://127.0.0.1:1",
        dhcp_enabled=False,
        bind_address="127.0.0.1",
        tftp_port=0,
        arm64_machines=arm64_machines,
    )
    servers = start_servers(create_app(settings))
    for server in servers.values():
        server.stop()
    missing = [r for r in caplog.records if r.getMessage() == "boot file cannot be served from the TFTP root"]
    assert [getattr(r, "file", None) for r in missing] == (["snp.efi"] if warned else [])
