"""A real monitoring stack on loopback for the tests: our services as their console scripts, Prometheus (Debian's)
scraping them with a config generated from the charts' ServiceMonitors and loading the rendered rules.

Ports come from ``free_port`` and every file lives in the test's temporary directory, so concurrent runs do not
collide. Homepage, backup and secrets watch a Kubernetes API emulator (homelab_common.k8s.testing) through a
kubeconfig, as they would a cluster; dns syncs static records to an RFC 2136 server that never answers. The backup
controller gets one volume whose backup, drill and check Jobs finish here as the kubelet would finish them (so its
per-volume and per-repository metrics exist); the secrets controller fills one Secret that rotates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

from chart_harness import REPO, Document, render_chart
from homelab_backup.core import JobSpec, build_job
from homelab_bootstrap import gitops
from homelab_common.k8s.testing import KubeEmulator
from homelab_common.site import Site, parse_site
from homelab_common.testing import free_port

#: Every service chart (test_prometheus checks this against rulefiles.services()).
SERVICES = ("pxe", "autoinstall", "dns", "homepage", "backup", "secrets")
#: The node every service's pod runs on (the site's one machine)
NODE = "node1"
#: The charts scrape every 30 s; the test scrapes and evaluates every second so it waits seconds, not minutes.
INTERVAL = "1s"
SITE = """\
domain: home.arpa
lan: {subnet: 127.0.0.0/8, gateway: 127.0.0.1, dns: [127.0.0.1]}
ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvQbX4ToAXJ0iBGsKJMoQuL8B7z4U4r5v0f7p1Bf7Qh test"]
machines:
  - {name: node1, mac: "52:54:00:00:00:01", ip: 127.0.0.11}
"""


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_until(what: str, check: Any, timeout: float = 90, procs: list[subprocess.Popen[str]] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs or []:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited while waiting for {what}")
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _exe(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


class Recorder:
    """An HTTP server on loopback that records each POSTed JSON body (stands in for ntfy)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    tmp: Path
    ntfy: Recorder
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    prometheus_port: int = 0
    alertmanager_port: int = 0
    started: float = 0.0

    @property
    def alertmanager(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = get_json(f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        body = get_json(f"{self.prometheus}/api/v1/query_range?" + urllib.parse.urlencode(params))
        return list(body["data"]["result"])

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.tmp / f"{name}.log").open("w") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _env(tmp: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB_")}
    env.update(HOMELAB_SECRETS_DIR=str(tmp / "no-secrets"), HOMELAB_HTTP_BIND=f"127.0.0.1:{port}", **settings)
    return env


def _kubeconfig(tmp: Path, url: str) -> Path:
    path = tmp / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _backup_cluster(kube: KubeEmulator) -> None:
    """A namespace with one volume in use, and the backup namespace with the repositories Secret."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    for name in ("apps", "backup"):
        core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret("backup", {"metadata": {"name": "homelab-backup-repositories"}, "data": {}})
    claim = {
        "metadata": {"name": "data", "namespace": "apps"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    }
    core.create_namespaced_persistent_volume_claim("apps", claim)
    pod = {
        "metadata": {"name": "app-0", "namespace": "apps"},
        "spec": {
            "nodeName": "node1",
            "containers": [{"name": "app", "image": "app"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
        "status": {"phase": "Running"},
    }
    core.create_namespaced_pod("apps", pod)


def _finish_job(kube: KubeEmulator, job: Any, report: dict[str, Any]) -> None:
    """What the kubelet and the Job controller do: the runner pod's termination message, the Job succeeded."""
    core = kubernetes.client.CoreV1Api(kube.api_client())
    ns, name = job.metadata.namespace, job.metadata.name
    terminated = {"exitCode": 0, "message": json.dumps(report)}
    status = {"name": "runner", "image": "i", "imageID": "i", "ready": False, "restartCount": 0}
    pod = {
        "metadata": {"name": f"{name}-x", "namespace": ns, "labels": {"job-name": name}},
        "spec": {"containers": [{"name": "runner", "image": "i"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [status | {"state": {"terminated": terminated}}]},
    }
    core.create_namespaced_pod(ns, pod)
    kubernetes.client.BatchV1Api(kube.api_client()).patch_namespaced_job(name, ns, {"status": {"succeeded": 1}})


def backup_reports(stack: Stack, kube: KubeEmulator) -> None:
    """A backup and a drill started through the API and a repository check as the schedule starts it, all
    finished: the controller reads their reports into its per-volume and per-repository metrics."""
    url = stack.url("backup")
    wait_until("the backup leader", lambda: get_json(f"{url}/status")["leader"], procs=stack.procs)
    for action in ("backup", "drill"):
        post_json(f"{url}/volumes/apps/data/{action}", {"repository": "nas"})
    slot = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    check = build_job("maintain", None, "nas", slot, JobSpec("homelab/backup", "homelab-backup-repositories"),
                      namespace="backup")  # fmt: skip
    batch = kubernetes.client.BatchV1Api(kube.api_client())
    batch.create_namespaced_job("backup", check)
    report = {"outcome": "ok", "message": "test", "finished": time.time(), "seconds": 1.0, "files": 1}
    for job in batch.list_job_for_all_namespaces().items:
        _finish_job(kube, job, report)
    metrics = ("homelab_backup_failing{", "homelab_backup_drill_ok{", "homelab_backup_check_ok{")
    wait_until("the backup reports read", lambda: all(m in _text(f"{url}/metrics") for m in metrics), procs=stack.procs)


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def start_services(stack: Stack, kube: KubeEmulator) -> None:
    tmp = stack.tmp
    kubeconfig = str(_kubeconfig(tmp, kube.url))
    stack.ports = {name: free_port() for name in SERVICES}
    (tmp / "site.yaml").write_text(SITE)
    (tmp / "state").mkdir()
    stack.start(
        "autoinstall",
        [_exe("homelab-autoinstall")],
        _env(
            tmp,
            stack.ports["autoinstall"],
            HOMELAB_AUTOINSTALL_SITE_FILE=str(tmp / "site.yaml"),
            HOMELAB_AUTOINSTALL_STATE_DIR=str(tmp / "state"),
            HOMELAB_AUTOINSTALL_PUBLIC_URL=stack.url("autoinstall"),
        ),
    )
    (tmp / "tftp").mkdir()
    stack.start(
        "pxe",
        [_exe("homelab-pxe")],
        _env(
            tmp,
            stack.ports["pxe"],
            HOMELAB_PXE_INTERFACE="lo",
            HOMELAB_PXE_SERVER_IP="127.0.0.1",
            HOMELAB_PXE_HTTP_PORT=str(stack.ports["pxe"]),
            HOMELAB_PXE_BIND_ADDRESS="127.0.0.1",
            HOMELAB_PXE_DHCP_PORT=str(free_port()),
            HOMELAB_PXE_PROXY_PORT=str(free_port()),
            HOMELAB_PXE_TFTP_PORT=str(free_port()),
            HOMELAB_PXE_REPLY_ADDRESS="127.0.0.1",
            HOMELAB_PXE_TFTP_ROOT=str(tmp / "tftp"),
            HOMELAB_PXE_ASSETS_DIR=str(tmp),
            HOMELAB_PXE_AUTOINSTALL_URL=stack.url("autoinstall"),
        ),
    )
    records = [{"name": "router.home.arpa", "type": "A", "targets": ["192.168.1.1"]}]
    stack.start(
        "dns",
        [_exe("homelab-dns")],
        _env(
            tmp,
            stack.ports["dns"],
            HOMELAB_DNS_OWNER_ID="homelab",
            HOMELAB_DNS_POLICY="sync",
            HOMELAB_DNS_DOMAIN_FILTER='["home.arpa"]',
            HOMELAB_DNS_KUBERNETES="false",
            HOMELAB_DNS_STATIC_RECORDS=json.dumps(records),
            # an RFC 2136 server that does not answer: every sync fails, so the dns SLO burns its budget and its
            # page alert really fires (what the Alertmanager test and the burn-rate plot use)
            HOMELAB_DNS_PROVIDER="rfc2136",
            HOMELAB_DNS_RFC2136_SERVER="127.0.0.1",
            HOMELAB_DNS_RFC2136_PORT=str(free_port()),
            HOMELAB_DNS_RFC2136_ZONE="home.arpa",
            HOMELAB_DNS_RFC2136_TIMEOUT="1",
            HOMELAB_DNS_TSIG_KEY_NAME="homelab",
            HOMELAB_DNS_TSIG_SECRET="c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
            HOMELAB_DNS_BACKOFF_MAX_SECONDS="2",
        ),
    )
    # one app that is up (autoinstall's /healthz) and one entry with a mistake (a diagnostic)
    static = [{"Infra": [{"Installer": {"href": f"{stack.url('autoinstall')}/healthz"}}, "not a service"]}]
    (tmp / "services.yaml").write_text(yaml.safe_dump(static))
    stack.start(
        "homepage",
        [_exe("homelab-homepage")],
        _env(
            tmp,
            stack.ports["homepage"],
            HOMELAB_HOMEPAGE_KUBECONFIG=kubeconfig,
            HOMELAB_HOMEPAGE_STATIC_APPS_FILE=str(tmp / "services.yaml"),
            HOMELAB_HOMEPAGE_PROBE_INTERVAL_SECONDS="1",
            HOMELAB_HOMEPAGE_NTFY_URL=stack.ntfy.url,
            HOMELAB_HOMEPAGE_NTFY_TOPIC="homelab-test",
        ),
    )
    _backup_cluster(kube)
    repositories = [
        {"name": "nas", "url": str(tmp / "restic-nas"), "password": "test"},
        {"name": "offsite", "url": str(tmp / "restic-offsite"), "password": "test", "offsite": True},
    ]
    stack.start(
        "backup",
        [_exe("homelab-backup")],
        _env(
            tmp,
            stack.ports["backup"],
            KUBECONFIG=kubeconfig,
            HOMELAB_BACKUP_REPOSITORIES=json.dumps(repositories),
            HOMELAB_BACKUP_NAMESPACE="backup",
            HOMELAB_BACKUP_IDENTITY="backup-0",
            HOMELAB_BACKUP_RESYNC_SECONDS="1",
        ),
    )
    # one Secret to fill that rotates: its next rotation is a series
    secret = {
        "metadata": {
            "name": "creds",
            "namespace": "apps",
            "annotations": {"secrets.homelab.dev/generate": "password", "secrets.homelab.dev/rotate-every": "720h"},
        },
        "type": "Opaque",
    }
    kubernetes.client.CoreV1Api(kube.api_client()).create_namespaced_secret("apps", secret)
    stack.start(
        "secrets",
        [_exe("homelab-secrets")],
        _env(
            tmp,
            stack.ports["secrets"],
            KUBECONFIG=kubeconfig,
            HOMELAB_SECRETS_IDENTITY="secrets-0",
            HOMELAB_SECRETS_LEASE_NAMESPACE="secrets",
        ),
    )
    for name in SERVICES:
        wait_until(f"{name} /healthz", lambda n=name: http_status(f"{stack.url(n)}/healthz") == 200, procs=stack.procs)


def service_monitors() -> list[Document]:
    """The ServiceMonitors our charts ship (default values), one per service chart."""
    docs = [d for s in SERVICES for d in render_chart(REPO / "charts" / s, namespace=s)]
    return [d for d in docs if d.kind == "ServiceMonitor"]


def scrape_configs(monitors: list[Document], ports: dict[str, int]) -> list[dict[str, Any]]:
    """What prometheus-operator makes of each ServiceMonitor endpoint, pointed at the service started here.

    The operator's target labels are kept (job = the Service, namespace, service, endpoint, pod, container), so
    the rules see the labels they see in the cluster: the app's own ``service`` label becomes ``exported_service``.
    The endpoint's relabelings copy what Kubernetes discovery knows of the pod (every pod runs on ``NODE``).
    """
    discovered = {"__meta_kubernetes_pod_node_name": NODE}
    configs = []
    for monitor in monitors:
        chart = monitor.chart
        for endpoint in monitor.body["spec"]["endpoints"]:
            labels = {
                "job": chart,
                "namespace": chart,
                "service": chart,
                "endpoint": endpoint["port"],
                "pod": f"{chart}-0",
                "container": "main",
            }
            for relabel in endpoint.get("relabelings", []):
                assert relabel.get("action", "replace") == "replace", relabel
                assert "regex" not in relabel, relabel
                labels[relabel["targetLabel"]] = ";".join(discovered[name] for name in relabel["sourceLabels"])
            configs.append(
                {
                    "job_name": f"serviceMonitor/{chart}/{monitor.name}/{endpoint['port']}",
                    "scrape_interval": INTERVAL,
                    "metrics_path": endpoint.get("path", "/metrics"),
                    "static_configs": [{"targets": [f"127.0.0.1:{ports[chart]}"], "labels": labels}],
                }
            )
    return configs


def alertmanager_config(site: Site) -> dict[str, Any]:
    """The monitoring app's Alertmanager config for ``site`` as Helm merges it (routes and inhibitions from
    values.yaml, receivers from the generated values-site.yaml), with its waits shortened for the test."""
    values = yaml.safe_load((REPO / "gitops" / "platform" / "monitoring" / "values.yaml").read_text())
    config: dict[str, Any] = values["kube-prometheus-stack"]["alertmanager"]["config"]
    generated = gitops.alertmanager_values(site)["config"]
    assert not set(config) & set(generated), "a map Helm would merge key by key: compose it here the same way"
    config |= generated
    config["route"].update(group_wait="1s", group_interval="1s")
    return config


def start_alertmanager(stack: Stack, config: dict[str, Any], name: str = "alertmanager") -> int:
    """A real Alertmanager (Debian's) with ``config``; returns its port (the stack's own is ``stack.alertmanager``)."""
    port = free_port()
    path = stack.tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    stack.start(
        name,
        [
            "prometheus-alertmanager",
            f"--config.file={path}",
            f"--storage.path={stack.tmp / name}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        dict(os.environ),
    )
    url = f"http://127.0.0.1:{port}/-/ready"
    wait_until(f"{name} ready", lambda: http_status(url) == 200, procs=stack.procs)
    return port


def _stack_alertmanager(stack: Stack) -> None:
    """The stack's Alertmanager: the site asks for ntfy, delivered through the homepage's route to the recorder."""
    site = parse_site(yaml.safe_load(SITE) | {"alerting": {"ntfy": {"url": stack.ntfy.url, "topic": "homelab-test"}}})
    config = alertmanager_config(site)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"] == gitops.NTFY_WEBHOOK, hook
            hook["url"] = f"{stack.url('homepage')}/api/v1/alerts/ntfy"
    stack.alertmanager_port = start_alertmanager(stack, config)


def start_prometheus(stack: Stack, rule_files: list[Path], alertmanager: str | None = None) -> None:
    stack.prometheus_port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape_configs(service_monitors(), stack.ports),
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (stack.tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    stack.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={stack.tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={stack.tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{stack.prometheus_port}",
        ],
        dict(os.environ),
    )
    wait_until("prometheus ready", lambda: http_status(f"{stack.prometheus}/-/ready") == 200, procs=stack.procs)


@contextmanager
def running(tmp: Path, kube: KubeEmulator, rule_files: list[Path]) -> Iterator[Stack]:
    """Services, Alertmanager (delivering through the homepage's ntfy route to a recorder), then Prometheus."""
    stack = Stack(tmp, Recorder())
    with ExitStack() as cleanup:
        cleanup.callback(stack.ntfy.close)
        cleanup.callback(stack.stop)
        start_services(stack, kube)
        backup_reports(stack, kube)
        _stack_alertmanager(stack)
        stack.started = time.time()
        start_prometheus(stack, rule_files, f"127.0.0.1:{stack.alertmanager_port}")
        yield stack
