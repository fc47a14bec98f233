"""1,000 annotated Secrets created at once → time until every one is filled; 100 rotations; the controller's memory.

Three processes, so the figures are the controller's own: the emulated Kubernetes API (homelab_common.k8s.testing,
served on 127.0.0.1), the controller (homelab_secrets' Controller with its defaults: watches, leader election,
debounced passes, audit on), and this driver. The driver creates the Secrets back to back through the real client
(mittwald's annotations: one 40-character password each, the common case) and lists them until every one carries
``secrets.homelab.dev/status: ok``. Then it asks for 100 rotations (the annotation ``POST /secrets/.../rotate``
writes) and waits until each has its ``password.previous``. Memory is the controller process's resident set
(VmRSS, and its peak VmHWM) from /proc, with the same process's RSS before the controller started as the floor.

Baseline, measured in the same run: the floor of any controller on this API — the driver itself writing the same
1,000 (and 100) values with one merge patch each, no watch, no decisions. The ratio is what the controller costs on
top of the writes it has to make. mittwald's kubernetes-secret-generator publishes no fill-time or memory figure
that we could find, so it is not quoted.

    uv run --frozen --no-sync python benchmarks/secrets_fill.py [--count 1000] [--rotations 100]
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes.client

OURS = "secrets.homelab.dev/"
MITTWALD = "secret-generator.v1.mittwald.de/"


def rss_kib(pid: int | str = "self") -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def serve_emulator() -> None:
    from homelab_common.k8s.testing import KubeEmulator

    with KubeEmulator() as kube:
        print(kube.port, flush=True)
        sys.stdin.read()  # until the driver closes our stdin


def serve_controller(url: str, count: int, rotations: int) -> None:
    """The controller under test; prints its RSS before starting, then the (system-wide monotonic) moments it has
    written ``count`` fills and ``rotations`` rotations, read from its own metrics (the driver does not poll)."""
    from prometheus_client import REGISTRY

    from homelab_common.k8s import Backoff
    from homelab_secrets.controller import Controller

    config = kubernetes.client.Configuration(host=url)
    controller = Controller(
        kubernetes.client.ApiClient(config), namespace="bench", lease=("bench", "secrets", "bench-0"),
        backoff=Backoff(0.05, 1.0), restart_workloads=False,
    )  # fmt: skip
    print(rss_kib()[0], flush=True)
    controller.start()
    for metric, target in (("homelab_secrets_generated_total", count), ("homelab_secrets_rotated_total", rotations)):
        while sum(REGISTRY.get_sample_value(metric, labels) or 0 for labels in ({}, {"type": "string"})) < target:
            time.sleep(0.02)
        print(time.monotonic(), flush=True)
    sys.stdin.read()
    controller.stop()


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=60)


def secret(i: int, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{prefix}{i}",
            "namespace": "bench",
            "annotations": {MITTWALD + "autogenerate": "password"},
        },
    }


def count_done(api: kubernetes.client.CoreV1Api, prefix: str, test: Any) -> int:
    reply = api.list_namespaced_secret("bench", _request_timeout=300, _preload_content=False)
    return sum(1 for s in json.loads(reply.data)["items"] if s["metadata"]["name"].startswith(prefix) and test(s))


def filled(s: dict[str, Any]) -> bool:
    return (s["metadata"].get("annotations") or {}).get(OURS + "status") == "ok"


def rotated(s: dict[str, Any]) -> bool:
    return "password.previous" in (s.get("data") or {})


def create_all(api: kubernetes.client.CoreV1Api, prefix: str, count: int) -> float:
    started = time.monotonic()
    for i in range(count):
        api.create_namespaced_secret("bench", secret(i, prefix))
    return time.monotonic() - started


def floor(api: kubernetes.client.CoreV1Api, prefix: str, count: int, writes: int) -> float:
    """The same writes made directly: ``writes`` merge patches per Secret (no watch, no decisions)."""
    started = time.monotonic()
    for i in range(count):
        for _ in range(writes):
            value = base64.b64encode(secrets.token_urlsafe(30)[:40].encode()).decode()
            body = {"data": {"password": value}, "metadata": {"annotations": {OURS + "status": "ok"}}}
            api.patch_namespaced_secret(f"{prefix}{i}", "bench", body)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rotations", type=int, default=100)
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-controller", nargs=3, metavar=("URL", "COUNT", "ROTATIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        serve_emulator()
        return
    if args.serve_controller:
        url, count, rotations = args.serve_controller
        serve_controller(url, int(count), int(rotations))
        return

    def client(port: str) -> kubernetes.client.CoreV1Api:
        config = kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))

    # The baseline, on its own emulator: what a fill costs at least (create + one write each) and what a requested
    # rotation costs at least (two writes), the same calls made directly without a controller.
    emulator, port = start("--serve-emulator")
    try:
        api = client(port)
        floor_create = create_all(api, "floor-", args.count)
        floor_fill = floor_create + floor(api, "floor-", args.count, 1)
        floor_rotate = floor(api, "floor-", args.rotations, 2)
    finally:
        stop(emulator)

    emulator, port = start("--serve-emulator")
    controller: subprocess.Popen[str] | None = None
    try:
        api = client(port)
        controller, before = start(
            "--serve-controller", f"http://127.0.0.1:{port}", str(args.count), str(args.rotations)
        )
        assert controller.stdout is not None
        rss_before = int(before)
        time.sleep(3)  # leader election and the first (empty) list
        started = time.monotonic()
        create_time = create_all(api, "s-", args.count)
        fill_total = float(controller.stdout.readline()) - started
        fill_time = fill_total - create_time
        if count_done(api, "s-", filled) != args.count:
            raise SystemExit("the controller counted its fills but not every Secret is filled")
        rss_filled, _ = rss_kib(controller.pid)

        started = time.monotonic()
        for i in range(args.rotations):
            body = {"metadata": {"annotations": {OURS + "rotate-requested-at": "2026-01-01T00:00:00Z"}}}
            api.patch_namespaced_secret(f"s-{i}", "bench", body)
        rotate_total = float(controller.stdout.readline()) - started
        if count_done(api, "s-", rotated) != args.rotations:
            raise SystemExit("the controller counted its rotations but not every Secret has its .previous")
        rss_end, peak = rss_kib(controller.pid)
    finally:
        for process in (controller, emulator):
            if process is not None:
                stop(process)

    print(f"Measured: {args.count} annotated Secrets created back to back -> all filled; {args.rotations} rotations.")
    print(f"  creating them took {create_time:.1f} s (the driver's calls); the last was filled {fill_time:.1f} s later")
    print(
        f"  ours:     all {args.count} filled {fill_total:.1f} s after the first create "
        f"({args.count / fill_total:.0f} Secrets/s); {args.rotations} rotations in {rotate_total:.1f} s"
    )
    print(
        f"  baseline: the same API calls made directly, no controller: {floor_fill:.1f} s for {args.count} "
        f"(create + write), {floor_rotate:.1f} s for {args.rotations} rotations (request + write); one create "
        f"took {floor_create / args.count * 1e3:.0f} ms on average (the emulator's latency, not the controller's)"
    )
    print(
        f"  ratio:    fill {fill_total / floor_fill:.2f}x the direct calls' time; "
        f"rotations {rotate_total / floor_rotate:.2f}x"
    )
    print(
        f"  memory:   controller RSS {rss_before / 1024:.0f} MiB before starting, {rss_filled / 1024:.0f} MiB "
        f"with {args.count} managed Secrets cached, {rss_end / 1024:.0f} MiB at the end (peak {peak / 1024:.0f} MiB)"
    )
    print("  mittwald: no published fill-time or memory figure found; not compared")


if __name__ == "__main__":
    main()
