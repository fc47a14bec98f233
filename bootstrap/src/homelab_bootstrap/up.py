"""`task up`: preflight, then assets → metal → cluster → bootstrap → apps, each skipped when already done.

Prints a progress line per step and the time each stage took, also written to ``<state>/up-timings.json`` so
"empty disks to running services in under an hour" is measured on every real run.

- Bring your own cluster: ``--kubeconfig`` skips metal and cluster.
- Virtual lab: ``--lab`` makes the metal stage create the machines as QEMU VMs through ``homelab_bootstrap.lab``;
  its installer assets come from the lab's own signed stand-in release (it cannot download Ubuntu).
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from homelab_bootstrap import assets, gitops, job, join, registry
from homelab_common.k8s.client import load_client
from homelab_common.k8s.errors import KubeConfigError
from homelab_common.site import Site, SiteError, backup_policy_warnings, load_site

API_PORT = 6443
GIT_PORT = 8418


class PreflightError(RuntimeError):
    """Something to fix before `task up` can start; the message says what."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; ``stage`` names it (the one-line message says what was stopped)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@dataclass
class Options:
    site_path: Path
    state: Path
    source: Path
    kubeconfig: Path | None = None
    lab: bool = False
    helm: str = "helm"
    autoinstall_url: str = "http://127.0.0.1:8081"
    #: The admin user autoinstall creates on every machine (its HOMELAB_AUTOINSTALL_USERNAME, default homelab)
    ssh_user: str = "homelab"
    install_timeout: float = 3600.0
    say: Callable[[str], None] = print
    is_root: Callable[[], bool] = field(default=lambda: os.geteuid() == 0)
    #: What must be stopped when `task up` exits (the virtual lab's VMs and network)
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass
class Stage:
    name: str
    done: Callable[[], str | None]  # a reason it is already done, or None
    run: Callable[[], None]


def tcp_open(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_answers(host: str, timeout: float = 3.0) -> bool:
    """An SSH server (its ``SSH-2.0-...`` banner) answers at host:22 — not merely something accepting TCP there."""
    try:
        with socket.create_connection((host, 22), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def api_endpoint(kubeconfig: Path) -> tuple[str, int]:
    """The API server's host and port from a kubeconfig (its current context's cluster)."""
    try:
        config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
        contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
        current: dict[str, Any] = contexts.get(config.get("current-context"), {}) or next(iter(contexts.values()), {})
        clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
        server = clusters[current.get("cluster")]["server"] if current else next(iter(clusters.values()))["server"]
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError) as exc:
        raise PreflightError(f"kubeconfig {kubeconfig}: cannot find the API server in it ({exc})") from None
    match = re.match(r"^https?://\[?([^\]/]+?)\]?(?::(\d+))?(/|$)", str(server))
    if not match:
        raise PreflightError(f"kubeconfig {kubeconfig}: server {server!r} is not a URL")
    return match[1], int(match[2] or 443)


def preflight(opts: Options) -> Site:
    """Clear errors before anything starts: the site file, tools, root where needed, the API when given."""
    if not opts.site_path.is_file():
        raise PreflightError(f"no site file at {opts.site_path}: run ./task configure (or copy site.example.yaml)")
    try:
        site = load_site(opts.site_path)
    except SiteError as exc:
        raise PreflightError(str(exc)) from None
    for where, message in backup_policy_warnings(site):  # told, not refused: backups can be added later
        opts.say(f"warning: {where}: {message} (3-2-1: services/backup/README.md)")
    for tool in ("git", opts.helm):
        if shutil.which(tool) is None:
            raise PreflightError(f"{tool} is not installed: run ./task deps")
    if opts.kubeconfig is not None:
        if not opts.kubeconfig.is_file():
            raise PreflightError(f"kubeconfig {opts.kubeconfig} does not exist")
        host, port = api_endpoint(opts.kubeconfig)
        if not tcp_open(host, port):
            raise PreflightError(f"the Kubernetes API at {host}:{port} (from {opts.kubeconfig}) is unreachable")
        return site
    if not site.machines:
        raise PreflightError(f"{opts.site_path}: machines: none listed; add them or pass --kubeconfig")
    if kubeconfig_path(opts).is_file():
        return site  # the cluster was reached before: the cluster stage checks it again
    if not opts.lab:
        try:
            address = ipaddress.IPv4Address(controller_address(site))
        except (OSError, ValueError):
            address = None
        if address is None or address not in site.lan.subnet:
            raise PreflightError(
                f"this controller has no address on lan.subnet {site.lan.subnet} (found {address or 'no route'}): "
                "the machines boot from it over that LAN, so connect it there (or fix lan.subnet)"
            )
    if not opts.is_root():
        raise PreflightError(
            "the metal stage needs root (proxyDHCP on port 67, TFTP on 69"
            + (", network namespaces and bridges for the virtual lab" if opts.lab else "")
            + "): run ./task up as root, or pass --kubeconfig for a cluster you already have"
        )
    return site


def kubeconfig_path(opts: Options) -> Path:
    return opts.kubeconfig or opts.state / "kubeconfig"


def api_address(site: Site) -> str:
    if site.k3s.api_vip is not None:
        return str(site.k3s.api_vip)
    first = site.first_server
    if first is None:
        raise PreflightError("machines: no server to run the Kubernetes API")
    return str(first.ip)


# ------------------------------------------------------------------------------------------------- assets


def assets_dir(opts: Options) -> Path:
    """What pxe serves under ``/assets/`` (``HOMELAB_PXE_ASSETS_DIR``)."""
    return opts.state / "pxe-assets"


def run_assets(opts: Options, site: Site) -> None:
    """The installer assets stage (first part of the metal work): the Ubuntu release of each architecture the
    machines have, verified and laid out for pxe (:mod:`homelab_bootstrap.assets`). A rerun downloads nothing.

    The virtual lab cannot download Ubuntu: it runs the same stage against its own signed stand-in release, served
    on loopback (:func:`homelab_bootstrap.lab.prepare_assets`).
    """
    if opts.lab:
        lab = importlib.import_module("homelab_bootstrap.lab")
        lab.prepare_assets(opts.state / "lab-cache", assets_dir(opts), opts.say)
        return
    assets.run(site, opts.state / "installer-cache", assets_dir(opts), opts.say)


def error_line(exc: BaseException, state: Path) -> str:
    """One line for the terminal; a longer message (a serial console, a log tail) goes to ``<state>/up-error.log``."""
    text = str(exc).strip() or type(exc).__name__
    first, _, rest = text.partition("\n")
    if not rest:
        return first
    path = state / "up-error.log"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        return f"{first.rstrip(':; ')} (the whole message: {path})"
    return first


# -------------------------------------------------------------------------------------------------- metal


def _json(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def machine_states(autoinstall_url: str) -> dict[str, str]:
    """Each machine's install state from autoinstall's ``GET /api/v1/machines`` (by MAC)."""
    payload = _json(f"{autoinstall_url.rstrip('/')}/api/v1/machines")
    items = payload.get("machines", payload) if isinstance(payload, dict) else payload
    return {str(m["mac"]): str(m["state"]) for m in items}


AUTOINSTALL_PORT = 8081
PXE_PORT = 8080


def boot_service_env(opts: Options, site: Site, address: str) -> dict[str, dict[str, str]]:
    """Settings of our autoinstall and pxe services on the controller (their HOMELAB_* variables)."""
    autoinstall = {
        "HOMELAB_HTTP_BIND": f"0.0.0.0:{AUTOINSTALL_PORT}",
        "HOMELAB_AUTOINSTALL_SITE_FILE": str(opts.site_path.resolve()),
        "HOMELAB_AUTOINSTALL_STATE_DIR": str((opts.state / "autoinstall").resolve()),
        "HOMELAB_AUTOINSTALL_PUBLIC_URL": f"http://{address}:{AUTOINSTALL_PORT}",
    }
    pxe = {
        "HOMELAB_HTTP_BIND": f"0.0.0.0:{PXE_PORT}",
        "HOMELAB_PXE_LAN": str(site.lan.subnet),
        "HOMELAB_PXE_SERVER_IP": address,
        "HOMELAB_PXE_HTTP_PORT": str(PXE_PORT),
        "HOMELAB_PXE_AUTOINSTALL_URL": f"http://127.0.0.1:{AUTOINSTALL_PORT}",
        "HOMELAB_PXE_ASSETS_DIR": str(assets_dir(opts).resolve()),
        # no warning about a missing arm64 boot file unless the inventory has an arm64 machine
        "HOMELAB_PXE_ARM64_MACHINES": str(any(m.arch == "arm64" for m in site.machines)).lower(),
    }
    if site.lan.interface:
        pxe["HOMELAB_PXE_INTERFACE"] = site.lan.interface
    if (images_dir(opts) / "index.json").is_file():  # Day 0 images for every node (the images stage built them)
        autoinstall["HOMELAB_AUTOINSTALL_IMAGES_DIR"] = str(images_dir(opts).resolve())
    if site.apps.registry:  # Day 2 images: registries.yaml on every node, with the credential minted once
        try:
            registry.node_credential(opts.state)
        except ValueError as exc:
            raise PreflightError(f"the nodes' registry credential: {exc}") from None
        autoinstall["HOMELAB_AUTOINSTALL_REGISTRY_URL"] = registry.PULL_URL
        autoinstall["HOMELAB_AUTOINSTALL_REGISTRY_CREDENTIAL_FILE"] = str((opts.state / registry.FILE).resolve())
    return {"autoinstall": autoinstall, "pxe": pxe}


def images_dir(opts: Options) -> Path:
    return opts.state / "images"


def build_images(opts: Options) -> None:
    """The images stage: every image built with buildah, or reused (homelab_bootstrap.images)."""
    from homelab_bootstrap import images

    try:
        images.build(opts.source, images_dir(opts), opts.say)
    except images.ImageError as exc:
        raise RuntimeError(f"images: {exc}") from None


def start_boot_services(opts: Options, site: Site) -> list[subprocess.Popen[bytes]]:
    """autoinstall then pxe as subprocesses of `task up` (stopped when the metal stage ends)."""
    address = controller_address(site)
    (opts.state / "autoinstall").mkdir(parents=True, exist_ok=True)
    procs = []
    for name, env in boot_service_env(opts, site, address).items():
        script = shutil.which(f"homelab-{name}") or shutil.which(
            f"homelab-{name}", path=str(Path(sys.executable).parent)
        )
        if script is None:
            raise PreflightError(f"homelab-{name} is not installed: run ./task deps")
        log = (opts.state / f"{name}.log").open("ab")
        procs.append(subprocess.Popen([script], env={**os.environ, **env}, stdout=log, stderr=log))
        opts.say(f"metal: started {name} (log {opts.state / f'{name}.log'})")
    return procs


def metal_done(site: Site, lab: bool = False) -> str | None:
    """Done when every machine's SSH server answers (installed and booted from disk).

    Never for the virtual lab: its VMs live only while `task up` runs, on a bridge the host has no route to.
    """
    if lab:
        return None
    if all(ssh_answers(str(m.ip), timeout=1.0) for m in site.machines):
        return "every machine answers on SSH"
    return None


def wait_autoinstall(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            machine_states(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise PreflightError(f"autoinstall did not answer at {url} (see its log)") from None
            time.sleep(0.5)


def wait_installed(url: str, site: Site, say: Callable[[str], None], timeout: float, poll: float = 10.0) -> None:
    """Poll autoinstall until every machine is ``installed``, printing the states whenever they change."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        states = machine_states(url)
        line = "metal: " + ", ".join(f"{m.name} {states.get(m.mac, 'unknown')}" for m in site.machines)
        if line != last:
            say(line)
            last = line
        if all(states.get(m.mac) == "installed" for m in site.machines):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"machines not installed after {timeout:.0f}s: {line}")
        time.sleep(poll)


def arm_and_wake(url: str, site: Site, say: Callable[[str], None]) -> None:
    """Arm each machine's install window just before waking it: only now does pxe hand it a seed URL, usable for
    one user-data fetch (services/autoinstall/README.md, threat model)."""
    base = url.rstrip("/")
    states = machine_states(url)
    for machine in site.machines:
        if states.get(machine.mac) == "installed":
            continue  # its disk boots; arming an installed machine is refused (reinstall is a decision)
        if states.get(machine.mac) == "installing":
            # re-arming would cut off an install in progress; a stuck one is armed again by hand
            say(f"metal: {machine.name} is installing already (POST {base}/api/v1/machines/{machine.mac}/arm if stuck)")
            continue
        _json(f"{base}/api/v1/machines/{machine.mac}/arm", "POST")
        _json(f"{base}/api/v1/machines/{machine.mac}/wake", "POST")
        say(f"metal: armed and woke {machine.name} ({machine.mac})")


def run_metal(opts: Options, site: Site) -> None:
    if opts.lab:
        run_lab(opts, site)
        return
    procs = start_boot_services(opts, site)
    try:
        wait_autoinstall(opts.autoinstall_url)
        arm_and_wake(opts.autoinstall_url, site, opts.say)
        wait_installed(opts.autoinstall_url, site, opts.say, opts.install_timeout)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def run_lab(opts: Options, site: Site) -> None:
    """The virtual lab (homelab_bootstrap.lab): the site's machines as QEMU VMs on a private bridge, booted by our
    pxe + autoinstall, each until its installer reports installed. The lab lives until `task up` exits (the VMs
    are its processes): ``opts.cleanup`` stops it.
    """
    try:
        lab = importlib.import_module("homelab_bootstrap.lab")
    except ImportError:
        raise PreflightError("the virtual lab is not in this checkout (homelab_bootstrap.lab)") from None
    workdir = opts.state / "lab"
    # Its machines get blank disks every run, so autoinstall must not remember them as installed from the last one
    shutil.rmtree(workdir, ignore_errors=True)
    virtual = lab.VirtualLab(site, opts.site_path, workdir, opts.state / "lab-cache", assets_dir=assets_dir(opts))
    opts.cleanup.callback(virtual.stop)
    virtual.start()
    virtual.start_homelab()
    opts.say(f"metal: virtual lab up (boot server {virtual.bootserver_ip}, accelerator {lab.accelerator()})")
    machines = [virtual.machine(m.name) for m in site.machines]
    for machine, vm in zip(site.machines, machines, strict=True):
        virtual.arm(machine.name)
        vm.start()
        opts.say(f"metal: armed and started VM {machine.name} ({machine.mac})")
    for machine, vm in zip(site.machines, machines, strict=True):
        marker = vm.wait_for(lab.INSTALLED_MARKER, lab.FAILED_MARKER, timeout=opts.install_timeout)
        if marker != lab.INSTALLED_MARKER:
            raise RuntimeError(f"{machine.name}: the installer failed; serial console: {vm.serial()[-1500:]}")
        opts.say(f"metal: {machine.name} installed")


# ------------------------------------------------------------------------------------------------ cluster


def cluster_done(opts: Options, site: Site | None = None) -> str | None:
    """Done when the kubeconfig reaches the API and (given the site) the nodes are exactly the inventory's."""
    path = kubeconfig_path(opts)
    if path.is_file():
        host, port = api_endpoint(path)
        if tcp_open(host, port):
            if site is not None:
                try:
                    nodes = join.node_names(load_client(str(path)))
                except (ApiException, OSError, KubeConfigError):
                    return None
                if join.node_problems(site, nodes) != ([], []):
                    return None
                return f"kubeconfig {path} reaches the API at {host}:{port}, every machine is a node"
            return f"kubeconfig {path} reaches the API at {host}:{port}"
    return None


def rewrite_kubeconfig(text: str, address: str) -> str:
    """k3s writes ``server: https://127.0.0.1:6443``; point it at the API address the controller can reach."""
    return re.sub(r"(server:\s*https://)[^:\s/]+(:\d+)", rf"\g<1>{address}\g<2>", text)


def run_cluster(opts: Options, site: Site, timeout: float = 1800.0) -> None:
    """Fetch the kubeconfig from the first server, give the other machines their join credentials over SSH
    (homelab_bootstrap.join), and wait until the cluster's nodes are exactly the inventory's."""
    address = api_address(site)
    deadline = time.monotonic() + timeout
    while not tcp_open(address, API_PORT):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Kubernetes API at {address}:{API_PORT} did not come up in {timeout:.0f}s")
        time.sleep(5)
    first = site.first_server
    assert first is not None
    ssh = join.Ssh(opts.ssh_user)
    kubeconfig = ssh.run(first, ["sudo", "cat", "/etc/rancher/k3s/k3s.yaml"])
    path = kubeconfig_path(opts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(rewrite_kubeconfig(kubeconfig, address))
    api = load_client(str(path))
    joined = join.node_names(api)
    for machine in site.machines:
        if machine.name not in joined:
            while not ssh_answers(str(machine.ip)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{machine.name} ({machine.ip}) does not answer on SSH after {timeout:.0f}s")
                time.sleep(5)
    join.join_nodes(site, ssh, joined, opts.say)
    join.wait_for_nodes(api, site, opts.say, max(deadline - time.monotonic(), 60.0))


# ------------------------------------------------------------------------------------------- the stages


def run_stages(stages: list[Stage], say: Callable[[str], None], timings: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "stages": {}}
    total = time.monotonic()
    for index, stage in enumerate(stages, 1):
        started = time.monotonic()
        try:
            reason = stage.done()
        except KeyboardInterrupt:
            raise Interrupted(stage.name) from None
        if reason:
            say(f"[{index}/{len(stages)}] {stage.name}: skipped, already done ({reason})")
            record["stages"][stage.name] = {"skipped": True, "seconds": round(time.monotonic() - started, 1)}
        else:
            say(f"[{index}/{len(stages)}] {stage.name}: starting")
            try:
                stage.run()
            except BaseException as exc:
                took = time.monotonic() - started
                stopped = isinstance(exc, KeyboardInterrupt)
                outcome = {"interrupted": True} if stopped else {"failed": str(exc)}
                record["stages"][stage.name] = {"skipped": False, "seconds": round(took, 1), **outcome}
                timings.parent.mkdir(parents=True, exist_ok=True)
                timings.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
                say(f"[{index}/{len(stages)}] {stage.name}: {'interrupted' if stopped else 'failed'} after {took:.0f}s")
                if stopped:
                    raise Interrupted(stage.name) from None
                raise
            took = time.monotonic() - started
            record["stages"][stage.name] = {"skipped": False, "seconds": round(took, 1)}
            say(f"[{index}/{len(stages)}] {stage.name}: done in {took:.0f}s")
        timings.parent.mkdir(parents=True, exist_ok=True)
        timings.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    record["total_seconds"] = round(time.monotonic() - total, 1)
    timings.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    minutes = record["total_seconds"] / 60
    say(f"up: finished in {minutes:.1f} min (goal: under 60 from empty disks; timings in {timings})")
    return record


def interrupted(stage: str | None, opts: Options) -> str:
    """The one line `task up` ends with on Ctrl-C: what was running, what was stopped, how to resume."""
    if stage is None:
        return "up: stopped (Ctrl-C) before any stage started; nothing was changed. Run ./task up again to start."
    stopped = ["the GitOps repository server"]
    if stage == "metal":
        lab = "the virtual lab's VMs and network" if opts.lab else "the boot services (pxe, autoinstall)"
        stopped.insert(0, lab)
    return (
        f"up: stopped (Ctrl-C) during the {stage} stage; stopped {' and '.join(stopped)}. Run ./task up again to "
        f"resume: finished stages are skipped (timings in {opts.state / 'up-timings.json'})."
    )


def controller_address(site: Site) -> str:
    """The controller's own address on the LAN (the cluster clones the seed repository from it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((str(site.lan.gateway), 9))
        return str(probe.getsockname()[0])


def lb_summary(site: Site) -> list[str]:
    """Where the LAN reaches the cluster: the fixed LoadBalancer addresses (none without k3s.lb_pool)."""
    fixed = gitops.lb_addresses(site)
    if not fixed:
        return []
    lines = ["", f"  ingress     {fixed['traefik']} (Traefik: every https://<app>.{site.domain}/)"]
    if site.apps.dns:
        lines.append(f"  point your router's DNS for {site.domain} at {fixed['dns']} (the dns app)")
    else:
        lines.append(f"  point *.{site.domain} at {fixed['traefik']} in your DNS")
    return lines


def summary(site: Site, opts: Options) -> list[str]:
    lines = ["", "Your homelab:"]
    for app in gitops.discover_apps(opts.source):
        if gitops.enabled(app, site) and app.name in (
            "argocd",
            "gitea",
            "woodpecker",
            "monitoring",
            "homepage",
            "registry",
        ):
            lines.append(f"  {app.name:<11} https://{gitops.hostname(site, app.name)}/")
    lines += lb_summary(site)
    kube = kubeconfig_path(opts)
    lines += ["", f"Generated admin credentials are Kubernetes Secrets (KUBECONFIG={kube}):"]
    lines.append(
        "  argocd  admin / kubectl -n argocd get secret argocd-initial-admin-secret "
        "-o jsonpath='{.data.password}' | base64 -d"
    )
    for namespace, name, key in job.admin_logins(opts.source, site):
        lines.append(
            f"  {namespace:<7} kubectl -n {namespace} get secret {name} -o jsonpath='{{.data.{key}}}' | base64 -d"
        )
    if site.certificates.mode == "ca":
        lines.append(
            "  CA      kubectl -n cert-manager get secret homelab-ca -o jsonpath='{.data.ca\\.crt}' | base64 -d"
        )
    return lines
