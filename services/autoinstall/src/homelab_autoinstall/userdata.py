"""The four NoCloud seed files for one machine: pure functions of the site, the machine and its secrets.

``user-data`` is an Ubuntu autoinstall config (``#cloud-config`` with an ``autoinstall:`` mapping, version 1) that
installs Ubuntu on the machine's disk with a static address, hardens login to SSH keys, prepares the kernel for
Kubernetes and installs k3s at the site's pinned version, then reports back to this service.

k3s is installed by the upstream install script (``INSTALL_K3S_VERSION`` pins the version) fetched with curl from
``k3s_install_url`` inside the target system; it needs the machines to reach the internet (or a mirror of the
script and the k3s release). Our own container images are delivered on Day 0 without a registry: with
``images`` (from `task images`' index, served by this service under ``/images/``), a late-command per image puts
its OCI archive into k3s's image import folder (imported when k3s starts) and checks it against the index's
sha256; a mismatch fails the install.

user-data travels over plain HTTP on the LAN, so it holds no long-lived secret (README, threat model): no password
hash (the admin's password is locked: SSH keys only) and no k3s token. The first server makes its own token when
k3s first starts; every other node gets k3s installed but neither enabled nor started, and `task up` pushes its join
credentials over SSH afterwards (a per-node bootstrap token for agents, the server token for servers).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from homelab_autoinstall import kubevip
from homelab_autoinstall.settings import DEFAULT_PACKAGES
from homelab_common.site import Machine, Site

K3S_API_PORT = 6443
#: k3s imports every image archive in this folder when it starts (containerd's import, names from the archive).
IMAGE_IMPORT_DIR = "/var/lib/rancher/k3s/agent/images"

#: What Kubernetes networking needs from the kernel: routing between pods, bridged traffic through iptables,
#: and enough inotify instances/watches for many pods' file watchers.
SYSCTL = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "fs.inotify.max_user_instances": "8192",
    "fs.inotify.max_user_watches": "524288",
}
#: br_netfilter must be loaded for the bridge-nf-call sysctls to exist; overlay is containerd's snapshotter.
KERNEL_MODULES = ["br_netfilter", "overlay"]

#: Security updates daily; reboots are left to kured (it watches /var/run/reboot-required and drains first).
AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
UNATTENDED_UPGRADES = 'Unattended-Upgrade::Automatic-Reboot "false";\n'


@dataclass(frozen=True)
class ImageArchive:
    """One OCI archive of `task images` (its index's ``archive`` and ``sha256``), served under ``/images/``."""

    archive: str
    sha256: str


@dataclass(frozen=True)
class RegistryMirror:
    """Day 2: where nodes pull ``homelab.internal/*`` images from, with the nodes' pull-only credential
    (homelab_bootstrap.registry: minted by `task up`, accepted only by the read-only pull endpoint)."""

    url: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class InstallOptions:
    """Settings that shape every machine's install (from the service's settings)."""

    username: str = "homelab"
    k3s_install_url: str = "https://get.k3s.io"
    packages: list[str] = field(default_factory=lambda: list(DEFAULT_PACKAGES))
    images: tuple[ImageArchive, ...] = ()
    registry: RegistryMirror | None = None


@dataclass(frozen=True)
class MachineSecrets:
    """What one install of one machine needs that must stay secret: the nonce of this user-data fetch, which only
    the installer that received it can send back with its installed report."""

    nonce: str


def mac_hyphenated(mac: str) -> str:
    """``52:54:00:12:34:56`` → ``52-54-00-12-34-56`` (iPXE's ``${mac:hexhyp}``; the seed URL's form)."""
    return mac.replace(":", "-")


def instance_id(machine: Machine, generation: int) -> str:
    """Changes with every reinstall, so cloud-init treats each install as a new instance."""
    return f"homelab-{machine.name}-{generation}"


def meta_data(machine: Machine, generation: int) -> str:
    return _yaml({"instance-id": instance_id(machine, generation), "local-hostname": machine.name})


def vendor_data() -> str:
    """Nothing from the vendor: everything is in user-data. Served because recent cloud-init asks for it."""
    return "#cloud-config\n{}\n"


def netplan(site: Site, machine: Machine) -> dict[str, Any]:
    """Static netplan v2 for the machine's NIC, matched by MAC (interface names differ between installer and
    installed system, and between machines)."""
    prefix = site.lan.subnet.prefixlen
    return {
        "version": 2,
        "ethernets": {
            "lan": {
                "match": {"macaddress": machine.mac},
                "dhcp4": False,
                "dhcp6": False,
                "addresses": [f"{machine.ip}/{prefix}"],
                "routes": [{"to": "default", "via": str(site.lan.gateway)}],
                "nameservers": {"addresses": [str(a) for a in site.lan.dns], "search": [site.domain]},
            }
        },
    }


def network_config(site: Site, machine: Machine) -> str:
    return _yaml(netplan(site, machine))


def join_address(site: Site) -> str:
    """Where joining servers and agents reach the cluster: ``k3s.api_vip`` when the site has one, else the first
    server's own address.

    The VIP is up as soon as the first server's k3s runs (kube-vip comes from k3s's auto-deploy folder, see
    kubevip.py), and it stays up while any server does, so a node joining later does not depend on the first one.
    """
    first = site.first_server
    if first is None:
        raise ValueError("the site has no server: nothing to join")
    return f"https://{site.k3s.api_vip or first.ip}:{K3S_API_PORT}"


def is_first_server(site: Site, machine: Machine) -> bool:
    first = site.first_server
    return first is not None and first.mac == machine.mac


def k3s_config(site: Site, machine: Machine) -> dict[str, Any]:
    """/etc/rancher/k3s/config.yaml without any token: the first server initialises embedded etcd (and generates
    the server token itself), the others join it once `task up` has added a token in ``config.yaml.d``."""
    config: dict[str, Any] = {"node-ip": str(machine.ip)}
    if machine.role == "server":
        if is_first_server(site, machine):
            config["cluster-init"] = True
        else:
            config["server"] = join_address(site)
        sans = [machine.name, f"{machine.name}.{site.domain}", str(machine.ip)]
        if site.k3s.api_vip is not None:
            sans.append(str(site.k3s.api_vip))
        config["tls-san"] = sans
        if site.k3s.lb_pool:
            # LoadBalancer addresses come from the pool (kube-vip), not from k3s's ServiceLB on the nodes' own IPs
            config["disable"] = ["servicelb"]
    else:
        config["server"] = join_address(site)
    return config


def storage(machine: Machine) -> dict[str, Any]:
    """The whole disk for / (``direct``: the ``lvm`` layout leaves half the disk unallocated)."""
    if machine.disk.startswith("serial:"):
        match = {"serial": machine.disk.removeprefix("serial:")}
    else:
        match = {"path": machine.disk}
    return {"layout": {"name": "direct", "match": match}}


def write_file(path: str, content: str, mode: str) -> str:
    """A late-command writing ``content`` to ``/target<path>``: base64 keeps any content safe from the shell."""
    target = shlex.quote(f"/target{path}")
    encoded = base64.b64encode(content.encode()).decode()
    parent = shlex.quote(f"/target{path.rsplit('/', 1)[0]}")
    return f"mkdir -p {parent} && echo {encoded} | base64 -d > {target} && chmod {mode} {target}"


def kube_vip_commands(site: Site, machine: Machine) -> list[str]:
    """On servers: kube-vip (API VIP, LoadBalancer pool) into k3s's auto-deploy folder."""
    if machine.role != "server" or not kubevip.manifests(site):
        return []
    return [write_file(kubevip.MANIFEST_PATH, kubevip.manifest_text(site), "0600")]


def image_commands(seed_url: str, images: tuple[ImageArchive, ...]) -> list[str]:
    """Day 0 delivery: each archive fetched from this service into k3s's import folder, then checked by sha256."""
    base = seed_url.split("/seed/", 1)[0] + "/images/"
    folder = f"/target{IMAGE_IMPORT_DIR}"
    commands = []
    for image in images:
        target = f"{folder}/{image.archive}"
        commands.append(
            f"mkdir -p {folder} && curl -fsS -o {shlex.quote(target)} {shlex.quote(base + image.archive)}"
            f" && echo {shlex.quote(f'{image.sha256}  {target}')} | sha256sum -c -"
        )
    return commands


#: Our image names' registry host (homelab_bootstrap.images.REGISTRY): never resolved, only mirrored.
IMAGE_REGISTRY = "homelab.internal"
REGISTRIES_PATH = "/etc/rancher/k3s/registries.yaml"


def registries(mirror: RegistryMirror) -> dict[str, Any]:
    """k3s's registries.yaml: ``homelab.internal/*`` pulled from the mirror's endpoint with the nodes' credential
    (docs.k3s.io/installation/private-registry: ``mirrors`` and ``configs``, keyed by the endpoint's host)."""
    host = mirror.url.split("://", 1)[1]
    return {
        "mirrors": {IMAGE_REGISTRY: {"endpoint": [mirror.url]}},
        "configs": {host: {"auth": {"username": mirror.username, "password": mirror.password}}},
    }


def late_commands(
    site: Site, machine: Machine, secrets: MachineSecrets, seed_url: str, options: InstallOptions
) -> list[str]:
    sysctl = "".join(f"{key} = {value}\n" for key, value in SYSCTL.items())
    sudoers = f"/etc/sudoers.d/90-homelab-{options.username}"
    role = "server" if machine.role == "server" else "agent"
    # Not started by the installer; the first server is enabled (it starts on the first boot, with the sysctls
    # applied, and makes its token), the others wait disabled until `task up` has pushed their join token.
    skip = "INSTALL_K3S_SKIP_START=true" + ("" if is_first_server(site, machine) else " INSTALL_K3S_SKIP_ENABLE=true")
    install = (
        f"curl -sfL {shlex.quote(options.k3s_install_url)} | INSTALL_K3S_VERSION={shlex.quote(site.k3s.version)}"
        f" {skip} sh -s - {role}"
    )
    return [
        write_file("/etc/modules-load.d/homelab-kubernetes.conf", "\n".join(KERNEL_MODULES) + "\n", "0644"),
        write_file("/etc/sysctl.d/90-homelab-kubernetes.conf", sysctl, "0644"),
        write_file("/etc/apt/apt.conf.d/20auto-upgrades", AUTO_UPGRADES, "0644"),
        write_file("/etc/apt/apt.conf.d/52homelab-unattended-upgrades", UNATTENDED_UPGRADES, "0644"),
        # Login is by SSH key only and the password is locked: the admin needs sudo without one.
        write_file(sudoers, f"{options.username} ALL=(ALL) NOPASSWD:ALL\n", "0440"),
        write_file("/etc/rancher/k3s/config.yaml", _yaml(k3s_config(site, machine)), "0600"),
        *kube_vip_commands(site, machine),
        *image_commands(seed_url, options.images),
        *([write_file(REGISTRIES_PATH, _yaml(registries(options.registry)), "0600")] if options.registry else []),
        f"curtin in-target --target=/target -- sh -c {shlex.quote(install)}",
        # The nonce binds the report to this fetch: a copy of the seed URL alone cannot mark the machine installed.
        f"curl -fsS -X POST --data nonce={secrets.nonce} {shlex.quote(seed_url + 'installed')}",
    ]


def error_commands(seed_url: str) -> list[str]:
    event = '{"event_type": "error", "name": "autoinstall/error-commands", "result": "FAIL", "origin": "homelab"}'
    return [
        f"curl -fsS -X POST -H 'Content-Type: application/json' --data {shlex.quote(event)}"
        f" {shlex.quote(seed_url + 'events')} || true"
    ]


def autoinstall(
    site: Site, machine: Machine, secrets: MachineSecrets, seed_url: str, options: InstallOptions
) -> dict[str, Any]:
    """The ``autoinstall:`` mapping (schema: subiquity's autoinstall-schema.json)."""
    return {
        "version": 1,
        # No identity section: the admin user comes from user-data with its password locked, so no password hash
        # exists anywhere (subiquity requires identity only when user-data is absent).
        "user-data": {
            "hostname": machine.name,
            "users": [
                {
                    "name": options.username,
                    "gecos": "homelab admin",
                    "shell": "/bin/bash",
                    "groups": ["adm", "sudo"],
                    "lock_passwd": True,
                    "ssh_authorized_keys": list(site.ssh_keys),
                }
            ],
        },
        "ssh": {"install-server": True, "allow-pw": False},
        "storage": storage(machine),
        "network": netplan(site, machine),
        "apt": {"geoip": True, "fallback": "offline-install"},
        "updates": "security",
        "packages": list(options.packages),
        "timezone": site.timezone,
        "late-commands": late_commands(site, machine, secrets, seed_url, options),
        "error-commands": error_commands(seed_url),
        "reporting": {"hook": {"type": "webhook", "endpoint": seed_url + "events"}},
        "shutdown": "reboot",
    }


def user_data(site: Site, machine: Machine, secrets: MachineSecrets, seed_url: str, options: InstallOptions) -> str:
    return "#cloud-config\n" + _yaml({"autoinstall": autoinstall(site, machine, secrets, seed_url, options)})


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100000)
