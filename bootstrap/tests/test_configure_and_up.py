"""`task configure` (the wizard driven through stdin, and the flags form) and `task up`'s preflight and stages."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab_bootstrap import configure, registry, up
from homelab_bootstrap.__main__ import parser
from homelab_common.site import load_site, parse_site
from homelab_common.testing import free_port

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn0dWkYkYf7bYV3N2W5r7mB0wq1eHj2sH0o8s5s2Jx1 admin@laptop"
FOUND = configure.Detected(
    interface="enp3s0",
    address="192.168.7.5",
    subnet="192.168.7.0/24",
    gateway="192.168.7.1",
    ssh_keys=[KEY],
    addresses=[("lo", "127.0.0.1/8"), ("enp3s0", "192.168.7.5/24"), ("wg0", "10.8.0.2/24")],
)


def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["configure", *argv])


def test_wizard_takes_detected_defaults_reasks_bad_answers_and_writes_a_valid_site(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    answers = "\n".join(
        [
            "",  # domain: home.arpa
            "Europe/Berlin",
            "",  # subnet: detected
            "",  # gateway: detected
            "",  # dns: the gateway
            "",  # interface: the one with an address in the subnet
            "",  # ssh key: detected
            "",  # api vip: .40
            "",  # load balancer range: .50-.70
            "",  # machine 1 name: node1
            "52-54-00-zz-00-01",  # not a MAC: asked again
            "52-54-00-00-00-01",
            "",  # ip: .11
            "/dev/nvme0n1",
            "",  # role: server
            "",  # no more machines
            "registry, woodpecker",  # apps to leave off (home.arpa is private: no ACME/tunnel questions)
        ]
    )
    out = io.StringIO()
    assert configure.configure(_args("--site", str(site)), io.StringIO(answers + "\n"), out, FOUND) == 0
    assert "not a MAC address" in out.getvalue()
    loaded = load_site(site)
    assert loaded.lan.interface == "enp3s0"
    assert str(loaded.lan.subnet) == "192.168.7.0/24"
    assert loaded.machines[0].mac == "52:54:00:00:00:01"
    assert str(loaded.machines[0].ip) == "192.168.7.11"
    assert loaded.timezone == "Europe/Berlin"
    assert loaded.k3s.lb_pool == "192.168.7.50-192.168.7.70"
    assert (loaded.apps.registry, loaded.apps.woodpecker, loaded.apps.monitoring) == (False, False, True)


def test_wizard_for_a_public_domain_asks_for_token_files_never_tokens(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    answers = ["lab.example.com", "", "", "", "", "", "", "", "", "node1", "52:54:00:00:00:01", "", "", "", ""]
    answers += ["me@example.com", "/etc/homelab/cf-token", "/etc/homelab/tunnel-token", "", ""]
    out = io.StringIO()
    assert configure.configure(_args("--site", str(site)), io.StringIO("\n".join(answers) + "\n"), out, FOUND) == 0
    loaded = load_site(site)
    assert loaded.certificates.acme is not None
    assert str(loaded.certificates.acme.token.file) == "/etc/homelab/cf-token"
    assert loaded.exposure.mode == "cloudflare-tunnel"
    written = yaml.safe_load(site.read_text())
    assert written["exposure"]["cloudflare_tunnel"]["token"] == {"file": "/etc/homelab/tunnel-token"}


def test_wizard_refuses_to_overwrite_unless_the_user_says_yes(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("keep me\n")
    out = io.StringIO()
    assert configure.configure(_args("--site", str(site)), io.StringIO("n\n"), out, FOUND) == 1
    assert site.read_text() == "keep me\n"
    assert "Overwrite it?" in out.getvalue()


def test_non_interactive_form_writes_from_flags_and_needs_force_to_overwrite(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    key = tmp_path / "key.pub"
    key.write_text(KEY)
    flags = ["--site", str(site), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1"]
    flags += ["--ssh-key-file", str(key), "--machine", "node1,52:54:00:12:34:56,10.77.0.11,/dev/vda"]
    empty = configure.Detected()
    assert configure.configure(_args(*flags), io.StringIO(), io.StringIO(), empty) == 0
    assert load_site(site).machines[0].disk == "/dev/vda"
    out = io.StringIO()
    assert configure.configure(_args(*flags), io.StringIO(), out, empty) == 1
    assert "pass --force" in out.getvalue()
    assert configure.configure(_args(*flags, "--force"), io.StringIO(), io.StringIO(), empty) == 0


def test_non_interactive_bad_machine_names_the_field_and_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    flags = ["--site", str(site), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1"]
    flags += ["--machine", "node1,not-a-mac,10.77.0.11", "--without", "woodpecker"]
    out = io.StringIO()
    found = configure.Detected(ssh_keys=[KEY])
    assert configure.configure(_args(*flags), io.StringIO(), out, found) == 1
    assert "machines[0].mac: not a MAC address" in out.getvalue()
    assert not site.exists()


def test_detection_reads_this_machines_default_route_when_it_has_one() -> None:
    found = configure.detect()
    if found.gateway is None:
        pytest.skip("this machine has no IPv4 default route to detect")
    assert found.interface
    assert found.subnet is not None
    assert "/" in found.subnet


# ----------------------------------------------------------------------------------------------- task up


def _opts(tmp_path: Path, site: Path, **extra: object) -> up.Options:
    helm = REPO / ".cache" / "bin" / "helm"
    return up.Options(
        site_path=site,
        state=tmp_path / "state",
        source=REPO,
        helm=str(helm) if helm.exists() else "helm",
        is_root=lambda: False,
        **extra,  # type: ignore[arg-type]
    )


def test_preflight_without_a_site_file_says_run_configure(tmp_path: Path) -> None:
    with pytest.raises(up.PreflightError, match=r"no site file at .*: run ./task configure"):
        up.preflight(_opts(tmp_path, tmp_path / "site.yaml"))


def test_preflight_names_the_bad_field(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "site.example.yaml").read_text())
    data["machines"][1]["mac"] = "nope"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    with pytest.raises(up.PreflightError, match=r"machines\[1\]\.mac: not a MAC address"):
        up.preflight(_opts(tmp_path, site))


def test_preflight_needs_root_for_the_metal_stage(tmp_path: Path) -> None:
    with pytest.raises(up.PreflightError, match=r"needs root .* or pass --kubeconfig"):
        up.preflight(_opts(tmp_path, REPO / "site.example.yaml", lab=True))


def test_preflight_says_when_the_controller_is_not_on_the_machines_lan(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "site.example.yaml").read_text())
    data["lan"] |= {"subnet": "198.51.100.0/24", "gateway": "198.51.100.1", "dns": ["198.51.100.1"]}
    data["k3s"] = {"api_vip": "198.51.100.40"}
    for index, machine in enumerate(data["machines"]):
        machine["ip"] = f"198.51.100.{11 + index}"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    with pytest.raises(up.PreflightError, match=r"no address on lan.subnet 198.51.100.0/24"):
        up.preflight(_opts(tmp_path, site))


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "k3s", "cluster": {"server": server}}],
                "contexts": [{"name": "k3s", "context": {"cluster": "k3s", "user": "admin"}}],
                "current-context": "k3s",
                "users": [{"name": "admin", "user": {"token": "t"}}],
            }
        )
    )
    return path


def test_preflight_with_an_unreachable_api_names_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = _kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}")
    with pytest.raises(up.PreflightError, match=rf"API at 127.0.0.1:{port} .* is unreachable"):
        up.preflight(_opts(tmp_path, REPO / "site.example.yaml", kubeconfig=kubeconfig))


def test_bring_your_own_cluster_skips_metal_and_cluster_and_timings_are_written(tmp_path: Path) -> None:
    with socket.socket() as api:
        api.bind(("127.0.0.1", 0))
        api.listen()
        kubeconfig = _kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{api.getsockname()[1]}")
        opts = _opts(tmp_path, REPO / "site.example.yaml", kubeconfig=kubeconfig)
        site = up.preflight(opts)
        ran: list[str] = []
        lines: list[str] = []
        stages = [
            up.Stage("metal", lambda: "bring-your-own cluster (--kubeconfig)", lambda: ran.append("metal")),
            up.Stage("cluster", lambda: up.cluster_done(opts), lambda: ran.append("cluster")),
            up.Stage("bootstrap", lambda: None, lambda: ran.append("bootstrap")),
            up.Stage("apps", lambda: None, lambda: ran.append("apps")),
        ]
        record = up.run_stages(stages, lines.append, tmp_path / "state" / "up-timings.json")
    assert ran == ["bootstrap", "apps"]
    assert lines[0] == "[1/4] metal: skipped, already done (bring-your-own cluster (--kubeconfig))"
    assert lines[1].startswith("[2/4] cluster: skipped, already done (kubeconfig")
    assert any(line.startswith("[4/4] apps: done in") for line in lines)
    saved = json.loads((tmp_path / "state" / "up-timings.json").read_text())
    assert saved["stages"]["metal"]["skipped"] is True
    assert saved["stages"]["apps"]["skipped"] is False
    assert saved == record
    assert site.domain == "home.arpa"


def test_cluster_stage_is_not_done_without_a_reachable_api(tmp_path: Path) -> None:
    opts = _opts(tmp_path, REPO / "site.example.yaml")
    assert up.cluster_done(opts) is None


def test_kubeconfig_from_k3s_is_pointed_at_the_api_address() -> None:
    text = "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n"
    assert "server: https://192.168.1.40:6443" in up.rewrite_kubeconfig(text, "192.168.1.40")


def test_summary_lists_app_urls_and_where_credentials_are(tmp_path: Path) -> None:
    site = load_site(REPO / "site.example.yaml")
    text = "\n".join(up.summary(site, _opts(tmp_path, REPO / "site.example.yaml")))
    assert "https://git.home.arpa/" in text
    assert "https://argocd.home.arpa/" in text
    assert "kubectl -n gitea get secret gitea-admin" in text
    assert "argocd-initial-admin-secret" in text
    assert "point your router's DNS for home.arpa at 192.168.1.51 (the dns app)" in text
    assert "ingress     192.168.1.50 (Traefik" in text


# ---------------------------------------------------------------------------------------------- the CLI


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "homelab-bootstrap"
    return subprocess.run([str(script), *argv], capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)


def test_cli_up_without_a_site_file_and_no_terminal_says_run_configure(tmp_path: Path) -> None:
    proc = _cli("up", "--site", str(tmp_path / "site.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "run ./task configure" in proc.stderr


def test_cli_configure_non_interactive_then_render(tmp_path: Path) -> None:
    key = tmp_path / "k.pub"
    key.write_text(KEY)
    args = ["configure", "--non-interactive", "--site", str(tmp_path / "site.yaml"), "--subnet", "10.77.0.0/24"]
    args += ["--gateway", "10.77.0.1", "--ssh-key-file", str(key), "--machine", "node1,52:54:00:12:34:56,10.77.0.11"]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copytree(REPO / "gitops", tmp_path / "tree" / "gitops")
    proc = _cli("render", "--site", str(tmp_path / "site.yaml"), "--tree", str(tmp_path / "tree"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = yaml.safe_load((tmp_path / "tree/gitops/platform/gitea/values-site.yaml").read_text())
    assert written["site"]["lan"]["subnet"] == "10.77.0.0/24"


def test_cli_names_a_bad_site_field(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "site.example.yaml").read_text())
    data["lan"]["gateway"] = "10.0.0.1"
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data))
    proc = _cli("render", "--site", str(tmp_path / "site.yaml"), "--tree", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "lan.gateway: 10.0.0.1 is outside lan.subnet" in proc.stderr


def test_boot_services_get_the_site_and_the_controller_address(tmp_path: Path) -> None:
    site = load_site(REPO / "site.example.yaml")
    env = up.boot_service_env(_opts(tmp_path, REPO / "site.example.yaml"), site, "192.168.1.5")
    assert env["autoinstall"]["HOMELAB_AUTOINSTALL_SITE_FILE"] == str((REPO / "site.example.yaml").resolve())
    assert env["autoinstall"]["HOMELAB_AUTOINSTALL_PUBLIC_URL"] == "http://192.168.1.5:8081"
    assert env["pxe"]["HOMELAB_PXE_AUTOINSTALL_URL"] == "http://127.0.0.1:8081"
    assert env["pxe"]["HOMELAB_PXE_LAN"] == "192.168.1.0/24"
    assert env["pxe"]["HOMELAB_PXE_INTERFACE"] == "eth0"
    assert "HOMELAB_AUTOINSTALL_IMAGES_DIR" not in env["autoinstall"]


def test_boot_services_serve_the_day0_images_once_built(tmp_path: Path) -> None:
    opts = _opts(tmp_path, REPO / "site.example.yaml")
    (up.images_dir(opts)).mkdir(parents=True)
    (up.images_dir(opts) / "index.json").write_text('{"images": []}')
    env = up.boot_service_env(opts, load_site(REPO / "site.example.yaml"), "192.168.1.5")
    assert env["autoinstall"]["HOMELAB_AUTOINSTALL_IMAGES_DIR"] == str(up.images_dir(opts).resolve())


def test_boot_services_give_every_install_the_pull_endpoint_and_one_credential(tmp_path: Path) -> None:
    opts = _opts(tmp_path, REPO / "site.example.yaml")
    site = load_site(REPO / "site.example.yaml")
    env = up.boot_service_env(opts, site, "192.168.1.5")["autoinstall"]
    assert env["HOMELAB_AUTOINSTALL_REGISTRY_URL"] == registry.PULL_URL
    path = Path(env["HOMELAB_AUTOINSTALL_REGISTRY_CREDENTIAL_FILE"])
    assert path == (opts.state / registry.FILE).resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    minted = path.read_text()
    up.boot_service_env(opts, site, "192.168.1.5")
    assert path.read_text() == minted, "minted once, then reused (reinstalled nodes get the same credential)"
    path.write_text("{}")
    with pytest.raises(up.PreflightError, match=r"registry-nodes.json: no 'username'.*delete the file"):
        up.boot_service_env(opts, site, "192.168.1.5")
    off = parse_site(site.model_dump(mode="json") | {"apps": site.apps.model_dump() | {"registry": False}})
    env = up.boot_service_env(opts, off, "192.168.1.5")["autoinstall"]
    assert "HOMELAB_AUTOINSTALL_REGISTRY_URL" not in env


def test_up_at_a_terminal_without_a_site_file_runs_the_wizard_first(tmp_path: Path) -> None:
    """Driven through a pseudo-terminal, as a person at the keyboard would."""
    import os
    import pty

    answers = [
        "home.arpa",
        "Etc/UTC",
        "198.51.100.0/24",  # no interface here is on it: the interface question is skipped
        "198.51.100.1",
        "",
        KEY,
        "",
        "",
        "node1",
        "52:54:00:12:34:56",
        "",
        "",
        "",
        "",
        "",
    ]
    master, slave = pty.openpty()
    script = Path(sys.executable).parent / "homelab-bootstrap"
    site = tmp_path / "site.yaml"
    proc = subprocess.Popen(
        [str(script), "up", "--site", str(site), "--state", str(tmp_path / "state")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
    )
    os.close(slave)
    os.write(master, ("\n".join(answers) + "\n").encode())
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=60) == 2
    os.close(master)
    text = output.decode(errors="replace")
    assert "starting the configuration wizard" in text
    assert load_site(site).machines[0].name == "node1"
    assert "preflight:" in text, "after the wizard, up goes on to its preflight"


def test_non_interactive_public_site_with_token_references(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    flags = ["--site", str(site), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1"]
    flags += ["--domain", "lab.example.com", "--acme-email", "me@example.com", "--acme-token-env", "CF_API_TOKEN"]
    flags += ["--tunnel-token-file", "/etc/homelab/tunnel", "--without", "registry"]
    assert configure.configure(_args(*flags), io.StringIO(), io.StringIO(), configure.Detected(ssh_keys=[KEY])) == 0
    loaded = load_site(site)
    assert loaded.certificates.acme is not None
    assert loaded.certificates.acme.token.env == "CF_API_TOKEN"
    assert loaded.exposure.cloudflare_tunnel is not None
    assert loaded.apps.registry is False


def test_non_interactive_acme_on_a_private_domain_names_the_field(tmp_path: Path) -> None:
    flags = ["--site", str(tmp_path / "s.yaml"), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway"]
    flags += ["10.77.0.1", "--acme-email", "me@example.com", "--acme-token-env", "T", "--without", "jellyfin"]
    out = io.StringIO()
    assert configure.configure(_args(*flags), io.StringIO(), out, configure.Detected(ssh_keys=[KEY])) == 1
    assert "apps: unknown app(s) jellyfin" in out.getvalue()
    flags = flags[:-2]
    out = io.StringIO()
    assert configure.configure(_args(*flags), io.StringIO(), out, configure.Detected(ssh_keys=[KEY])) == 1
    assert "certificates.acme: home.arpa is a private domain" in out.getvalue()


def test_a_failed_stage_is_recorded_in_the_timings_and_stops_the_run(tmp_path: Path) -> None:
    def broken() -> None:
        raise RuntimeError("the Kubernetes API at 10.0.0.1:6443 did not come up")

    ran: list[str] = []
    stages = [
        up.Stage("cluster", lambda: None, broken),
        up.Stage("bootstrap", lambda: None, lambda: ran.append("bootstrap")),
    ]
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="did not come up"):
        up.run_stages(stages, lines.append, tmp_path / "t.json")
    assert ran == []
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["stages"]["cluster"]["failed"].startswith("the Kubernetes API")
    assert lines[-1].startswith("[1/2] cluster: failed after")


def test_metal_stage_follows_the_real_autoinstall_service_until_every_machine_is_installed(tmp_path: Path) -> None:
    """The real `homelab-autoinstall` on loopback; each machine walks its contract as an installer would."""
    import threading
    import urllib.request

    script = Path(sys.executable).parent / "homelab-autoinstall"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    opts = _opts(tmp_path, REPO / "site.example.yaml")
    site = load_site(REPO / "site.example.yaml")
    env = up.boot_service_env(opts, site, "127.0.0.1")["autoinstall"]
    wol = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wol.bind(("127.0.0.1", 0))
    wol.settimeout(30)
    env |= {
        "HOMELAB_HTTP_BIND": f"127.0.0.1:{port}",
        "HOMELAB_AUTOINSTALL_PUBLIC_URL": url,
        "HOMELAB_AUTOINSTALL_WOL_BROADCAST": "127.0.0.1",
        "HOMELAB_AUTOINSTALL_WOL_PORT": str(wol.getsockname()[1]),
    }
    (tmp_path / "state" / "autoinstall").mkdir(parents=True)
    log = (tmp_path / "autoinstall.log").open("wb")
    proc = subprocess.Popen([str(script)], env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        up.wait_autoinstall(url, timeout=60)
        assert set(up.machine_states(url).values()) == {"pending"}
        said: list[str] = []
        up.arm_and_wake(url, site, said.append)
        assert said == [f"metal: armed and woke {m.name} ({m.mac})" for m in site.machines]
        woken = [wol.recv(200)[6:12] for _ in site.machines]  # a magic packet repeats the MAC after 6 x ff
        assert woken == [bytes.fromhex(m.mac.replace(":", "")) for m in site.machines]

        def install_all() -> None:
            for machine in site.machines:
                with urllib.request.urlopen(f"{url}/api/v1/boot/{machine.mac}") as reply:
                    seed = json.loads(reply.read())["seed_url"]
                user_data = urllib.request.urlopen(seed + "user-data").read().decode()
                nonce = re.search(r"nonce=[A-Za-z0-9_-]+", user_data)
                assert nonce is not None
                written = re.search(
                    r"echo ([A-Za-z0-9+/=]+) \| base64 -d > /target/etc/rancher/k3s/registries.yaml", user_data
                )
                assert written is not None, "every install writes registries.yaml (Day 2 images)"
                mirrors.append(yaml.safe_load(base64.b64decode(written.group(1))))
                report = urllib.request.Request(seed + "installed", data=nonce.group(0).encode(), method="POST")
                urllib.request.urlopen(report).read()

        mirrors: list[Any] = []
        installer = threading.Thread(target=install_all)
        lines: list[str] = []
        installer.start()
        up.wait_installed(url, site, lines.append, timeout=120, poll=0.2)
        installer.join(timeout=60)
        said.clear()
        up.arm_and_wake(url, site, said.append)  # a rerun: installed machines are neither armed nor woken
        assert said == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        wol.close()
    assert lines[-1] == "metal: node1 installed, node2 installed, node3 installed"
    credential = registry.node_credential(opts.state)
    auth = {"username": credential.username, "password": credential.password}
    expected = {
        "mirrors": {"homelab.internal": {"endpoint": [registry.PULL_URL]}},
        "configs": {"127.0.0.1:30500": {"auth": auth}},
    }
    assert mirrors == [expected] * len(site.machines)
