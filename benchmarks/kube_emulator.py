"""The Kubernetes emulator at 1,000 objects: time of a create, get, patch and list, ours against kmock's own paths.

Every Kubernetes-facing test (and benchmarks/secrets_fill.py) talks to homelab_common.k8s.testing's emulator, built
on kmock 0.8. kmock routes each request by replaying its whole request log through every reaction's filters and
finds the object a request addresses by scanning every stored object, so each request costs more than the one
before it. Ours answers routing from the request itself and finds objects through an index by resource and
(namespace, name).

Method: one emulator on 127.0.0.1, one real ``kubernetes`` client, requests made one after another. ``--count``
Secrets are created; then the last ``--sample`` creates, ``--sample`` gets and merge patches of random Secrets and
10 lists of all of them are timed (wall time per request, client included, mean). The list time is mostly the
client decoding 1,000 Secrets.

Baseline, same run, same machine: the same emulator class with kmock's request routing, object lookup and
resource discovery put back (the code paths this change replaced), on a fresh emulator.

    uv run --frozen --no-sync python benchmarks/kube_emulator.py [--count 1000] [--sample 100]

Measured on the shared 2-core development machine (load average 8-12 from other work), 1,000 Secrets: a create
11.8 ms against 816.5 ms with kmock's paths (69x), a get 10.5 ms against 750.9 ms (71x), a merge patch 25.6 ms
against 574.7 ms (22x), a list of all 1,000 216.9 ms against 437.2 ms (2x: the client's decoding dominates);
creating all 1,000 took 10.9 s against 416.1 s (38x).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import kubernetes.client

from homelab_common.k8s.testing import KubeEmulator


class KmockPaths(KubeEmulator):
    """The emulator with kmock 0.8's linear request routing and object lookup (the baseline)."""

    def _emulator_class(self) -> type[Any]:
        import kmock

        ours = super()._emulator_class()

        class Linear(ours):  # type: ignore[misc,valid-type]
            def __iter__(self) -> Any:
                return kmock.KubernetesEmulator.__iter__(self)

            def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> Any:  # noqa: N802
                return kmock.KubernetesEmulator._KubernetesEmulator__get_objs(self, request, strict)  # type: ignore[attr-defined]

            def _get_resources(self) -> Any:
                return kmock.KubernetesEmulator._get_resources(self)

        return Linear


def mean_ms(calls: list[Callable[[], object]]) -> float:
    started = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - started) / len(calls) * 1e3


def measure(emulator: KubeEmulator, count: int, sample: int) -> dict[str, float]:
    with emulator:
        api = kubernetes.client.CoreV1Api(emulator.api_client())

        def create(i: int) -> Callable[[], object]:
            body: Any = {"metadata": {"name": f"s{i}", "labels": {"shard": str(i % 10)}}, "stringData": {"k": "v" * 40}}
            return lambda: api.create_namespaced_secret("bench", body)

        started = time.perf_counter()
        for i in range(count - sample):
            create(i)()
        first = time.perf_counter() - started
        figures = {"create": mean_ms([create(i) for i in range(count - sample, count)])}
        figures["fill"] = first + figures["create"] * sample / 1e3
        names = [f"s{random.randrange(count)}" for _ in range(sample)]
        figures["get"] = mean_ms([partial(api.read_namespaced_secret, name, "bench") for name in names])
        patch = {"metadata": {"annotations": {"bench": "1"}}}
        figures["patch"] = mean_ms([partial(api.patch_namespaced_secret, name, "bench", patch) for name in names])
        figures["list"] = mean_ms([lambda: api.list_namespaced_secret("bench") for _ in range(10)])
        assert len(api.list_namespaced_secret("bench").items) == count
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=100)
    args = parser.parse_args()
    ours = measure(KubeEmulator(), args.count, args.sample)
    base = measure(KmockPaths(), args.count, args.sample)
    print(f"Kubernetes emulator with {args.count} Secrets, mean wall time per request (real client, loopback):")
    print(f"  {'':28} {'ours':>10} {'kmock paths':>12} {'speedup':>8}")
    for key, label in (
        ("create", f"create (last {args.sample})"),
        ("get", "get"),
        ("patch", "merge patch"),
        ("list", f"list all {args.count}"),
    ):
        print(f"  {label:28} {ours[key]:8.1f} ms {base[key]:9.1f} ms {base[key] / ours[key]:7.1f}x")
    print(
        f"  {'creating all ' + str(args.count):28} {ours['fill']:8.1f} s  {base['fill']:9.1f} s  "
        f"{base['fill'] / ours['fill']:7.1f}x"
    )


if __name__ == "__main__":
    main()
