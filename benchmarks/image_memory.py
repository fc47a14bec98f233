"""Memory of the homepage measured inside its image, against realistic Kubernetes objects; sizes of every image.

Run as root (buildah, mount namespaces): ``.venv/bin/python benchmarks/image_memory.py [--apps 500]``.

The homepage image's entrypoint runs as the chart runs it (tests/image_harness.py: read-only root, 10001:10001)
against the Kubernetes emulator filled with ``--apps`` apps (Ingress + Service + EndpointSlice + 2 Pods each),
whose objects carry what a real API server adds and the emulator omits: ``managedFields`` (one entry per field
manager, with its fieldsV1 tree), ``uid``, ``creationTimestamp``, ``generation``, and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation client-side apply writes. Printed: the gunicorn
master's and worker's RSS and PSS idle (all apps discovered) and after load (page views, searches, API calls),
and the same-run baseline: the same service from the host's virtualenv, same settings, same objects.

Then every image's uncompressed size from `task images`' index, against the 120 MB goal and rough figures of
comparable upstream images for scale (approximate, linux/amd64, uncompressed; they cannot be pulled or measured
here): external-dns ~ 75 MB (a Go binary on distroless), gethomepage ~ 230 MB (Node.js on Alpine),
python:3.11-slim-bookworm ~ 125 MB (the Dockerfile's default base, with nothing of ours in it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
from homepage_render import fill, get, memory_mb, objects, timed  # noqa: E402
from image_harness import running  # noqa: E402

from homelab_bootstrap import images  # noqa: E402
from homelab_common.k8s.testing import KubeEmulator  # noqa: E402
from homelab_common.testing import free_port  # noqa: E402

UPSTREAM_MB = {"external-dns v0.15": 75.0, "gethomepage v0.10": 230.0, "python:3.11-slim-bookworm": 125.0}
MANAGERS = ("helm", "argocd-controller", "kube-controller-manager")


def _fields(value: Any) -> Any:
    """A fieldsV1 tree for ``value`` (every key as ``f:<key>``), as the API server records per manager."""
    if isinstance(value, dict):
        return {f"f:{k}": _fields(v) for k, v in value.items()}
    return {}


def realistic(obj: dict[str, Any], index: int) -> dict[str, Any]:
    """``obj`` with the server-set fields a real API server returns."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    applied = json.dumps({k: v for k, v in obj.items() if k != "status"}, separators=(",", ":"))
    meta.setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = applied
    meta["uid"] = str(uuid.UUID(int=index))
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    meta["generation"] = 1
    meta["managedFields"] = [
        {
            "manager": manager,
            "operation": "Apply" if manager != "kube-controller-manager" else "Update",
            "apiVersion": obj.get("apiVersion", "v1"),
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields({"metadata": {"labels": meta.get("labels", {})}, "spec": obj.get("spec", {})}),
            **({"subresource": "status"} if manager == "kube-controller-manager" else {}),
        }
        for manager in MANAGERS
    ]
    return obj


def serve_and_measure(start: Any, port: int, apps: int, requests: int) -> dict[str, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    deadline = time.monotonic() + 300
    pid = start()
    while True:
        try:
            status, body = get(conn, "/api/v1/summary")
            summary = json.loads(body)
            if status == 200 and summary["synced"] and summary["apps"] == apps:
                break
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if time.monotonic() > deadline:
            sys.exit("the homepage did not discover every app within 300 s")
        time.sleep(0.2)
    time.sleep(2)  # the debounced rebuild
    idle = memory_mb(pid)
    gz = {"Accept-Encoding": "gzip"}
    timed(conn, "/", requests, gz)
    timed(conn, "/?q=app+04", requests // 4, gz)
    timed(conn, "/api/v1/apps", requests // 2)
    loaded = memory_mb(pid)
    conn.close()
    return {**{f"idle_{k}": v for k, v in idle.items()}, **{f"load_{k}": v for k, v in loaded.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: buildah and mount namespaces")
    cache = Path(os.environ.get("HOMELAB_IMAGE_CACHE") or Path.home() / ".cache" / "homelab" / "images")  # as tests/
    entries = {e["name"]: e for e in images.build(REPO, cache, print)}
    ref = images.ensure_loaded(entries["homepage"], cache)

    with KubeEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        items = objects(args.apps)
        import homepage_render

        homepage_render.objects = lambda count: [(r, realistic(o, i)) for i, (r, o) in enumerate(items)]  # type: ignore[assignment]
        fill(emulator, args.apps)
        sample = realistic(items[-1][1], 0)
        print(f"emulator: {args.apps} apps, objects with managedFields ({len(json.dumps(sample))} bytes per Ingress)")
        secrets = Path(tmp) / "kube"
        secrets.mkdir()
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "b",
            "clusters": [{"name": "b", "cluster": {"server": emulator.url}}],
            "users": [{"name": "b", "user": {"token": "b"}}],
            "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}],
        }  # fmt: skip
        (secrets / "kubeconfig").write_text(json.dumps(kubeconfig))
        settings = {"HOMELAB_HOMEPAGE_HREF_CHECK_INTERVAL_SECONDS": "0", "HOMELAB_HOMEPAGE_LOG_LEVEL": "WARNING"}

        port = free_port()
        env = {"HOMELAB_HTTP_BIND": f"127.0.0.1:{port}", "HOMELAB_HOMEPAGE_KUBECONFIG": "/etc/kube/kubeconfig"}
        with running(ref, Path(tmp) / "image.log", env={**settings, **env}, readonly={"/etc/kube": secrets}) as svc:
            ours = serve_and_measure(lambda: svc.process.pid, port, args.apps, args.requests)

        import subprocess

        port = free_port()
        env = {"HOMELAB_HTTP_BIND": f"127.0.0.1:{port}", "HOMELAB_HOMEPAGE_KUBECONFIG": str(secrets / "kubeconfig")}
        binary = Path(sys.executable).parent / "homelab-homepage"
        host_env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMELAB_", "KUBERNETES_"))}
        proc = subprocess.Popen([str(binary)], env={**host_env, **settings, **env}, stderr=subprocess.DEVNULL)
        try:
            baseline = serve_and_measure(lambda: proc.pid, port, args.apps, args.requests)
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"\nhomepage memory, {args.apps} realistic apps (MB)      in the image   host venv (baseline)   ratio")
    for key in ours:
        print(f"  {key:<40} {ours[key]:>10.1f}   {baseline[key]:>10.1f}   {ours[key] / baseline[key]:>8.2f}")
    worker = max(ours["idle_worker_rss"], ours["load_worker_rss"])
    verdict = "meets" if worker < 60 else "misses"
    print(f"  serving worker RSS {worker:.1f} MB: {verdict} the < 60 MB target")

    print("\nimage sizes (uncompressed), goal <= 120 MB for a Python service")
    for name, entry in sorted(entries.items()):
        size, archive = entry["size"] / 1e6, entry["archive_size"] / 1e6
        print(f"  {name:<12} {size:>7.1f} MB   archive {archive:>6.1f} MB   {entry['ref']}")
    for name, mb in UPSTREAM_MB.items():
        print(f"  upstream {name:<28} ~{mb:.0f} MB (approximate, not measured here)")


if __name__ == "__main__":
    main()
