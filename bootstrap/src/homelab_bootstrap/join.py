"""Nodes join the cluster with credentials `task up` pushes over SSH after the install, never through user-data.

Why over SSH, and not a bootstrap token put in each machine's seed just before it is woken (the other way issue 9
allowed): k3s accepts bootstrap tokens from **agents only** — a server must join with the server token itself
(docs.k3s.io/cli/token: "Bootstrap tokens can only be used to join agents"), and that token is the whole cluster's
key (anyone holding it is effectively cluster-admin, and it encrypts the datastore's secrets). Seeds travel as
plain HTTP on the LAN; SSH is encrypted and authenticated by the user's key. One path for both roles, no cluster
secret ever on the LAN, and no ordering between installing the first server and waking the rest.

- the first server makes its own server token when k3s first starts (its config has none);
- a joining **agent** gets a per-node bootstrap token minted on the first server just before the push
  (``k3s token create --ttl 15m``, secure ``K10<CA hash>::`` format, so the agent also checks it reached our
  cluster): it lets that agent join as an agent, never as a server, and expires if unused;
- a joining **server** gets the server token read from the first server.

The token goes over the SSH connection's stdin into ``/etc/rancher/k3s/config.yaml.d/50-homelab-join.yaml``
(mode 0600; never on a command line, where ``ps`` shows it), then k3s (or k3s-agent) is enabled and started: the
install left it installed but disabled. Afterwards :func:`node_problems` checks that the nodes that joined are
exactly the inventory's.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import kubernetes.client

from homelab_common.site import Machine, Site

#: k3s reads every file here after config.yaml (k3s ≥ 1.21); the install wrote config.yaml without a token.
CONFIG_DIR = "/etc/rancher/k3s/config.yaml.d"
JOIN_FILE = "50-homelab-join.yaml"
SERVER_TOKEN_FILE = "/var/lib/rancher/k3s/server/token"  # noqa: S105 - a path, not a secret
BOOTSTRAP_TTL = "15m"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]


class JoinError(RuntimeError):
    """A node could not be given its join credentials, or the cluster's nodes are not the inventory's."""


@dataclass
class Ssh:
    """Commands on the machines as the admin user (the user's SSH key; the site's ``ssh_keys``)."""

    user: str
    program: str = "ssh"
    options: list[str] = field(default_factory=lambda: list(SSH_OPTIONS))

    def run(self, machine: Machine, command: list[str], stdin: str | None = None, timeout: float = 90.0) -> str:
        remote = " ".join(shlex.quote(part) for part in command)
        argv = [self.program, *self.options, f"{self.user}@{machine.ip}", remote]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise JoinError(
                f"ssh to {machine.name} ({machine.ip}) took over {timeout:.0f}s: check that the machine is up and "
                "that your SSH key (site.yaml ssh_keys) is loaded (ssh-add -l)"
            ) from None
        if proc.returncode != 0:
            raise JoinError(f"ssh {machine.name} ({machine.ip}) `{command[0]} ...` failed: {proc.stderr.strip()}")
        return proc.stdout


def push_command(machine: Machine, config_dir: str = CONFIG_DIR) -> list[str]:
    """Write stdin to the join file (0600) and start k3s; the token never appears in the command."""
    unit = "k3s" if machine.role == "server" else "k3s-agent"
    path = f"{config_dir}/{JOIN_FILE}"
    script = (
        f"umask 077 && mkdir -p {shlex.quote(config_dir)} && cat > {shlex.quote(path)}.tmp"
        f" && mv {shlex.quote(path)}.tmp {shlex.quote(path)} && systemctl enable --now {unit}"
    )
    return ["sudo", "sh", "-c", script]


def join_nodes(
    site: Site,
    ssh: Ssh,
    joined: set[str],
    say: Callable[[str], None],
    *,
    config_dir: str = CONFIG_DIR,
    server_token_file: str = SERVER_TOKEN_FILE,
) -> list[str]:
    """Give every machine that has not joined yet its credentials; returns the names it pushed to."""
    first = site.first_server
    if first is None:
        raise JoinError("machines: no server to join")
    pending = [m for m in site.machines if m.mac != first.mac and m.name not in joined]
    server_token: str | None = None
    for machine in pending:
        if machine.role == "server":
            if server_token is None:
                server_token = ssh.run(first, ["sudo", "cat", server_token_file]).strip()
            token = server_token
        else:
            description = f"homelab join {machine.name}"
            token = ssh.run(
                first, ["sudo", "k3s", "token", "create", "--ttl", BOOTSTRAP_TTL, "--description", description]
            ).strip()
        if not token or "\n" in token:
            raise JoinError(f"no usable join token from {first.name} for {machine.name}")
        ssh.run(machine, push_command(machine, config_dir), stdin=f"token: {token}\n")
        say(f"cluster: {machine.name} given its join {'server token' if machine.role == 'server' else 'token'}")
    return [m.name for m in pending]


def node_names(api: kubernetes.client.ApiClient) -> set[str]:
    return {str(node.metadata.name) for node in kubernetes.client.CoreV1Api(api).list_node().items if node.metadata}


def node_problems(site: Site, nodes: set[str]) -> tuple[list[str], list[str]]:
    """(nodes not in the inventory, inventory machines that have not joined)."""
    expected = {m.name for m in site.machines}
    return sorted(nodes - expected), sorted(expected - nodes)


def wait_for_nodes(
    api: kubernetes.client.ApiClient,
    site: Site,
    say: Callable[[str], None],
    timeout: float,
    poll: float = 5.0,
) -> None:
    """Until the cluster's nodes are exactly the inventory's. A node the inventory does not know is an error at
    once: something joined that `task up` did not put there."""
    deadline = time.monotonic() + timeout
    last: list[str] | None = None
    while True:
        unknown, missing = node_problems(site, node_names(api))
        if unknown:
            raise JoinError(
                f"node(s) not in the inventory joined the cluster: {', '.join(unknown)}. Find out how (a leaked "
                "join token?), then remove them: kubectl delete node " + " ".join(unknown)
            )
        if not missing:
            say(f"cluster: nodes are exactly the inventory's ({len(site.machines)})")
            return
        if missing != last:
            say(f"cluster: waiting for {', '.join(missing)} to join")
            last = missing
        if time.monotonic() > deadline:
            raise JoinError(f"not joined after {timeout:.0f}s: {', '.join(missing)} (journalctl -u k3s-agent there)")
        time.sleep(poll)
