"""Ingress marked public -> tunnel route AND proxied CNAME in place, through a FAKE Cloudflare API; p50/p99.

The dns service runs with provider cloudflare and a tunnel against homelab_common.cloudflare_fake (a contract fake
of Cloudflare's v4 API on 127.0.0.1, not Cloudflare: the real API adds its network round trips, typically tens of
milliseconds per call). Each Ingress is created through the real kubernetes client in the emulated API server
(homelab_common.k8s.testing) with the ``homelab.dev/public`` annotation; a poller reads the fake's state until the
tunnel configuration routes the host to Traefik and the CNAME to ``<tunnel>.cfargotunnel.com`` exists. Latency =
both present - create call returned. Two shapes: a burst (all created back to back) and a trickle (one every
200 ms). The service runs with its default debounce (0.1 s).

Same-run baseline: the same Ingresses (unmarked) through the LAN path, the embedded DNS server, until it answers.
Quoted baseline (not run): before this, a public hostname needed a manual route in Cloudflare's dashboard.

    uv run --frozen --no-sync python benchmarks/cloudflare_routes.py [--count 50]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

import dns.message
import dns.query
import dns.rcode
import kubernetes.client

from homelab_common.cloudflare_fake import FakeCloudflare, fake_cloudflare
from homelab_common.k8s import Backoff
from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_common.testing import free_port
from homelab_dns.app import build_runtime
from homelab_dns.settings import Settings

ZONE = "bench.example.com"
TOKEN = "bench-token"
ACCOUNT = "0123456789abcdef0123456789abcdef"
TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


def ingress(i: int, public: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"app{i}",
            "namespace": "bench",
            "annotations": {"homelab.dev/public": "true"} if public else {},
        },
        "spec": {"rules": [{"host": f"app{i}.{ZONE}"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": f"10.1.{i // 250}.{i % 250 + 1}"}]}},
    }


def measure(
    kube: KubeEmulator, count: int, gap: float, offset: int, public: bool, done_for: Callable[[int], bool]
) -> list[float]:
    networking = kubernetes.client.NetworkingV1Api(kube.api_client())
    created: dict[int, float] = {}
    finished: dict[int, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with lock:
                pending = [i for i in created if i not in finished]
            if not pending:
                time.sleep(0.001)
                continue
            for i in pending:
                if done_for(i):
                    now = time.monotonic()
                    with lock:
                        finished[i] = now
            time.sleep(0.005)  # the poller shares the GIL with the service: leave it room

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    for i in range(offset, offset + count):
        networking.create_namespaced_ingress("bench", ingress(i, public))
        with lock:
            created[i] = time.monotonic()
        if gap:
            time.sleep(gap)
    wait_for(lambda: len(finished) == count, timeout=180)
    stop.set()
    poller.join()
    return sorted(finished[i] - created[i] for i in created)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def run(name: str, settings: Settings, count: int, public: bool, done_for: Callable[[int], bool]) -> list[float]:
    worst: list[float] = []
    with KubeEmulator() as kube:
        runtime = build_runtime(settings, api_client=kube.api_client(), kube_backoff=Backoff(0.05, 0.5))
        runtime.start()
        try:
            wait_for(lambda: runtime.controller.ready() is None and runtime.controller.is_leader(), timeout=60)
            wait_for(lambda: kube.request_count("watch", "ingresses") > 0)
            time.sleep(0.5)
            for shape, gap, offset in (("burst", 0.0, 0), ("trickle", 0.2, count)):
                values = measure(kube, count, gap, offset, public, done_for)
                worst.append(pct(values, 99))
                print(
                    f"  {name:10s} {shape:7s}: p50 {pct(values, 50) * 1e3:7.1f} ms  p99 {pct(values, 99) * 1e3:7.1f} ms"
                    f"  max {values[-1] * 1e3:7.1f} ms  (n={len(values)})"
                )
        finally:
            runtime.stop()
    return worst


def routed(fake: FakeCloudflare) -> Callable[[int], bool]:
    def check(i: int) -> bool:
        host = f"app{i}.{ZONE}"
        config = fake.tunnel_config(ACCOUNT, TUNNEL) or {}
        if not any(rule.get("hostname") == host for rule in config.get("ingress", [])):
            return False
        return any(
            r["content"] == f"{TUNNEL}.cfargotunnel.com" and r["proxied"] for r in fake.find(ZONE, host, "CNAME")
        )

    return check


def answered(port: int) -> Callable[[int], bool]:
    def check(i: int) -> bool:
        try:
            response = dns.query.udp(dns.message.make_query(f"app{i}.{ZONE}", "A"), "127.0.0.1", port=port, timeout=1)
        except Exception:
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    common: dict[str, Any] = {"owner_id": "bench", "policy": "sync", "domain_filter": [ZONE], "identity": "bench-0"}
    with fake_cloudflare() as fake:
        fake.add_token(TOKEN)
        fake.add_zone(ZONE)
        fake.add_tunnel(ACCOUNT, TUNNEL)
        cloudflare = Settings(
            **common,
            provider="cloudflare",
            cloudflare_api_url=fake.url,
            cloudflare_api_token=TOKEN,
            cloudflare_account_id=ACCOUNT,
            cloudflare_tunnel_id=TUNNEL,
        )
        ours = run("cloudflare", cloudflare, args.count, True, routed(fake))
        calls = len(fake.calls)
    port = free_port()
    embedded = Settings(**common, dns_host="127.0.0.1", dns_port=port)
    base = run("embedded", embedded, args.count, False, answered(port))

    print()
    print(f"Measured: Ingress created -> routed on the tunnel and CNAME'd (fake API), {args.count} per shape.")
    print(f"  ours (cloudflare, fake API): worst p99 {max(ours) * 1e3:.0f} ms; {calls} API calls in all")
    print(f"  baseline (same run, embedded LAN DNS answer): worst p99 {max(base) * 1e3:.0f} ms")
    print(f"  ratio: {max(ours) / max(base):.2f}x the LAN path")
    print("  quoted baseline: a manual route in Cloudflare's dashboard per public hostname (minutes, by hand).")


if __name__ == "__main__":
    main()
