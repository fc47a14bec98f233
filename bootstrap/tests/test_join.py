"""Joining nodes (homelab_bootstrap.join): credentials pushed over a real SSH connection (OpenSSH's sshd on
loopback, the stand-ins ``sudo``, ``k3s`` and ``systemctl`` on its PATH, as the lab stands in for the installer),
and the check that the cluster's nodes are exactly the inventory's, against the Kubernetes emulator."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from homelab_bootstrap import join
from homelab_common.k8s.testing import KubeEmulator, kube
from homelab_common.site import Site, parse_site
from homelab_common.testing import free_port

__all__ = ["kube"]

SITE = {
    "domain": "home.arpa",
    "lan": {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "dns": ["10.77.0.1"]},
    "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4bWxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxhYmxh lab@test"],
    "k3s": {"version": "v1.33.5+k3s1"},
    "machines": [
        {"name": "node1", "mac": "52:54:00:12:34:01", "ip": "10.77.0.11", "role": "server"},
        {"name": "node2", "mac": "52:54:00:12:34:02", "ip": "10.77.0.12", "role": "server"},
        {"name": "node3", "mac": "52:54:00:12:34:03", "ip": "10.77.0.13", "role": "agent"},
        {"name": "node4", "mac": "52:54:00:12:34:04", "ip": "10.77.0.14", "role": "agent"},
    ],
}
SERVER_TOKEN = "K10" + "c" * 64 + "::server:" + "s" * 32

STAND_INS = {
    # sudo: the admin has passwordless sudo on the machines; here the session is root already
    "sudo": '#!/bin/sh\nexec "$@"\n',
    # k3s token create: prints a secure-format bootstrap token naming what it was asked for
    "k3s": '#!/bin/sh\n[ "$1 $2" = "token create" ] || exit 3\necho "$*" >> "$RECORD/k3s.log"\n'
    'n=$(wc -l < "$RECORD/k3s.log")\necho "K10cccc::abcde$n.0123456789abcdef"\n',
    # systemctl enable --now <unit>: records the unit and the join file it was started with
    "systemctl": '#!/bin/sh\necho "$* $(stat -c %a "$JOIN") $(cat "$JOIN")" >> "$RECORD/systemctl.log"\n',
}


@pytest.fixture
def machines_over_ssh(tmp_path: Path) -> Iterator[tuple[join.Ssh, Path, Path]]:
    """An sshd on 127.0.0.1 standing in for every machine (ssh's HostName option points each one at it)."""
    if os.geteuid() != 0:
        pytest.skip("sshd needs root (CI runs as root)")
    bin_dir, record, config_dir = tmp_path / "bin", tmp_path / "record", tmp_path / "etc-k3s"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    token_file = tmp_path / "server-token"
    token_file.write_text(SERVER_TOKEN + "\n")
    key = tmp_path / "id_ed25519"
    for path in (key, tmp_path / "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "id_ed25519.pub").read_text())
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host_key'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nPasswordAuthentication no\n"
        f"SetEnv PATH={bin_dir}:/usr/bin:/bin RECORD={record} JOIN={config_dir}/{join.JOIN_FILE}\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log = tmp_path / "sshd.log"
    with log.open("wb") as stderr:
        sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=stderr)
    options = [
        "-o", "HostName=127.0.0.1", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", *join.SSH_OPTIONS,
    ]  # fmt: skip
    ssh = join.Ssh("root", options=options)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ssh", *options, "root@127.0.0.1", "true"], capture_output=True).returncode != 0:
            assert sshd.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "sshd did not accept the key within 30 s"
            time.sleep(0.2)
        yield ssh, record, config_dir
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)


@pytest.fixture
def site() -> Site:
    return parse_site(SITE)


@pytest.mark.root
def test_servers_get_the_server_token_and_agents_a_bootstrap_token_each_over_ssh(
    machines_over_ssh: tuple[join.Ssh, Path, Path], site: Site, tmp_path: Path
) -> None:
    ssh, record, config_dir = machines_over_ssh
    said: list[str] = []
    pushed = join.join_nodes(site, ssh, {"node1", "node4"}, said.append, config_dir=str(config_dir),
                             server_token_file=str(tmp_path / "server-token"))  # fmt: skip
    assert pushed == ["node2", "node3"]  # node1 made the cluster, node4 has joined already
    # one bootstrap token for the one agent, short-lived and named after it
    assert (record / "k3s.log").read_text() == "token create --ttl 15m --description homelab join node3\n"
    started = (record / "systemctl.log").read_text().splitlines()
    assert started == [
        f"enable --now k3s 600 token: {SERVER_TOKEN}",
        "enable --now k3s-agent 600 token: K10cccc::abcde1.0123456789abcdef",
    ]
    assert said == ["cluster: node2 given its join server token", "cluster: node3 given its join token"]


def test_the_token_never_appears_on_a_command_line(site: Site) -> None:
    agent = next(m for m in site.machines if m.name == "node3")
    command = join.push_command(agent)
    assert command[:3] == ["sudo", "sh", "-c"]
    assert "token" not in command[3]
    assert command[3].endswith("systemctl enable --now k3s-agent")
    assert "umask 077" in command[3]


@pytest.mark.root
def test_a_failing_ssh_names_the_machine(machines_over_ssh: tuple[join.Ssh, Path, Path], site: Site) -> None:
    ssh, _, _ = machines_over_ssh
    first = next(m for m in site.machines if m.name == "node1")
    with pytest.raises(join.JoinError, match=r"ssh node1 \(10\.77\.0\.11\) `sudo \.\.\.` failed"):
        ssh.run(first, ["sudo", "false"])


def add_nodes(kube: KubeEmulator, *names: str) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client())
    for name in names:
        core.create_node(kubernetes.client.V1Node(metadata=kubernetes.client.V1ObjectMeta(name=name)))


def test_nodes_exactly_the_inventorys_pass(kube: KubeEmulator, site: Site) -> None:
    add_nodes(kube, "node1", "node2", "node3", "node4")
    said: list[str] = []
    join.wait_for_nodes(kube.api_client(), site, said.append, timeout=5, poll=0.1)
    assert said == ["cluster: nodes are exactly the inventory's (4)"]


def test_a_node_the_inventory_does_not_know_is_reported_at_once(kube: KubeEmulator, site: Site) -> None:
    add_nodes(kube, "node1", "node2", "rogue")
    started = time.monotonic()
    with pytest.raises(join.JoinError, match=r"not in the inventory joined the cluster: rogue\..*delete node rogue"):
        join.wait_for_nodes(kube.api_client(), site, lambda _: None, timeout=300, poll=0.1)
    assert time.monotonic() - started < 60  # at once, not after the join timeout


def test_machines_that_never_join_are_named_after_the_timeout(kube: KubeEmulator, site: Site) -> None:
    add_nodes(kube, "node1", "node2")
    said: list[str] = []
    with pytest.raises(join.JoinError, match=r"not joined after 0s: node3, node4"):
        join.wait_for_nodes(kube.api_client(), site, said.append, timeout=0.2, poll=0.1)
    assert said == ["cluster: waiting for node3, node4 to join"]
