"""The nodes' pull credential for our images on Day 2 (registries.yaml), minted by the bootstrap before any node.

Why its own credential, and why a read-only mirror: the registry (gitops/platform/registry, CNCF distribution)
authenticates with htpasswd, which has no authorization: every user in its htpasswd file may push as well as pull.
The push credential (Secret registry-admin, generated in the cluster) must not be on every node, and the nodes are
installed before the cluster exists. So:

- ``task up`` mints the nodes' credential once and keeps it in the site's state folder
  (``<state>/registry-nodes.json``, mode 0600; reused on every later run, so reinstalled nodes get the same one);
- autoinstall writes it into each node's ``/etc/rancher/k3s/registries.yaml`` (homelab_autoinstall.userdata),
  pointing ``homelab.internal`` (our image names) at the pull endpoint;
- the pull endpoint is a read-only registry: a second distribution instance on the push registry's storage with
  ``storage.maintenance.readonly.enabled`` (every upload answered 405), whose htpasswd holds only this user
  (``secret_manifest``: Secret registry-nodes, the bcrypt line under ``auth``, created by the bootstrap job from
  the state file; gitops/platform/registry/templates/pull.yaml, on the push registry's node and volume; reached
  at ``PULL_URL``). Not a pull-through proxy: tried,
  distribution 2.8's proxy sends no credential to an upstream that asks for basic auth (its requests got 401), so
  it could not read the push registry.

What the credential grants is therefore exactly a pull of images that autoinstall already serves without any
credential on the LAN on Day 0 (``/images/``): user-data (plain HTTP on the LAN) may carry it without breaking the
rule that it holds no secret granting more than the LAN already has (services/autoinstall/README.md, threat model).
tests/images/test_registry.py runs both registries for real and proves the split.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

FILE = "registry-nodes.json"
USERNAME = "nodes"
SECRET_NAME = "registry-nodes"  # noqa: S105 - a Secret object's name, not a secret
NAMESPACE = "registry"
LENGTH = 32
#: The pull endpoint as every node reaches it: its own loopback, the NodePort of Service registry/registry-pull
#: (gitops/platform/registry, ``pull.nodePort``), in registries.yaml (HOMELAB_AUTOINSTALL_REGISTRY_URL). Loopback
#: and a port, not a name: it needs no DNS record and no TLS certificate the node would have to trust before the
#: cluster (and its CA) exists; the credential grants no more than the LAN has (above), and the hop from the node
#: to the pod is the cluster network. Before the registry runs nothing listens there: containerd's pull of a
#: ``homelab.internal`` image then fails over to its default endpoint, which never resolves, so only images already
#: on the node start — which every pinned image is, imported on Day 0 (the charts pull IfNotPresent).
PULL_NODE_PORT = 30500
PULL_URL = f"http://127.0.0.1:{PULL_NODE_PORT}"
ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Credential:
    username: str
    password: str


def node_credential(state: Path) -> Credential:
    """The nodes' pull credential from ``state``, minted there (0600) on first use."""
    path = state / FILE
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        try:
            return Credential(str(data["username"]), str(data["password"]))
        except KeyError as exc:
            raise ValueError(f"{path}: no {exc.args[0]!r}: delete the file to mint a new credential") from None
    state.mkdir(parents=True, exist_ok=True)
    credential = Credential(USERNAME, "".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"username": credential.username, "password": credential.password}, f)
    tmp.replace(path)
    return credential


def htpasswd_line(credential: Credential) -> str:
    """``user:$2y$...``: the bcrypt htpasswd entry distribution (and Apache's htpasswd -v) accept."""
    hashed = bcrypt.hashpw(credential.password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{credential.username}:{hashed.replace('$2b$', '$2y$', 1)}"


def matches(data: dict[str, str], credential: Credential) -> bool:
    """Whether a registry-nodes Secret's decoded ``data`` holds ``credential`` and an htpasswd line that verifies."""
    user, _, hashed = data.get("auth", "").strip().partition(":")
    expected = (credential.username, credential.password, credential.username)
    if (data.get("username"), data.get("password"), user) != expected or not hashed.startswith("$2y$"):
        return False
    try:
        return bcrypt.checkpw(credential.password.encode(), hashed.replace("$2y$", "$2b$", 1).encode())
    except ValueError:  # not a bcrypt hash at all
        return False


def secret_manifest(credential: Credential) -> dict[str, Any]:
    """Secret registry-nodes (namespace registry): the pull mirror's htpasswd file (``auth``) and the credential."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "homelab"}},
        "type": "Opaque",
        "stringData": {
            "username": credential.username,
            "password": credential.password,
            "auth": htpasswd_line(credential) + "\n",
        },
    }
