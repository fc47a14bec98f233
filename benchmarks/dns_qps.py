"""Embedded DNS server: queries per second under dnsperf on loopback, against dnsmasq serving the same records.

Measures, in one run on the same machine:
  1. maximum rate (dnsperf, 10 s, same options) for our embedded server and for dnsmasq (the same-run baseline);
  2. latency percentiles at a fixed 1,000 queries/s (dnsperf -Q 1000 -v, per-query latencies).
Targets: >= 25 % of dnsmasq's rate; p99 < 5 ms at 1,000 q/s.

    uv run --frozen --no-sync python benchmarks/dns_qps.py [--seconds 10] [--records 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSServer

from homelab_common.testing import free_port
from homelab_dns.core import Plan, Record
from homelab_dns.providers.embedded import DnsServer, Zone, zone_config

ZONE = "home.example.com"


class _Quiet:
    """dnslib's server logs every query by default."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def dnsperf(port: int, queries: Path, seconds: int, *extra: str) -> str:
    return subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds), *extra],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def qps(output: str) -> tuple[float, str]:
    rate = float(re.search(r"Queries per second:\s+([\d.]+)", output)[1])  # type: ignore[index]
    lost = re.search(r"Queries lost:\s+(\d+ \([\d.]+%\))", output)[1]  # type: ignore[index]
    return rate, lost


def latencies(output: str) -> list[float]:
    """Per-query latencies (seconds) from dnsperf -v lines such as ``> NOERROR name A 0.000123``."""
    return [float(m[1]) for m in re.finditer(r"^> \w+ \S+ \S+ ([\d.]+)$", output, re.MULTILINE)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class DictResolver(BaseResolver):  # type: ignore[misc]
    """The textbook dnslib server: decode each query, build and encode each answer."""

    def __init__(self, records: list[Record]) -> None:
        self.table = {r.name + ".": r for r in records}

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        rec = self.table.get(str(request.q.qname).lower())
        if rec is not None and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(str(request.q.qname), QTYPE.A, ttl=rec.ttl, rdata=A(rec.targets[0])))
        return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="UDP worker threads of the embedded server")
    args = parser.parse_args()
    for tool in ("dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian packages dnsperf, dnsmasq)")

    records = [Record(f"app{i}.{ZONE}", "A", (f"10.0.{i // 250}.{i % 250 + 1}",), 300) for i in range(args.records)]
    work = Path(tempfile.mkdtemp(prefix="dns-qps-"))
    queries = work / "queries.txt"
    queries.write_text("".join(f"{r.name} A\n" for r in records))

    zone = Zone(zone_config([ZONE], f"ns.{ZONE}"))
    zone.apply(Plan(create=records))
    ours = DnsServer(zone, "127.0.0.1", free_port(), udp_workers=args.workers)
    ours.start()

    plain_port = free_port()
    plain = DNSServer(DictResolver(records), port=plain_port, address="127.0.0.1", logger=_Quiet())
    plain.start_thread()

    dnsmasq_port = free_port()
    dnsmasq = subprocess.Popen(
        [
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            f"--port={dnsmasq_port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            f"--pid-file={work / 'dnsmasq.pid'}",
            *(f"--host-record={r.name},{r.targets[0]}" for r in records),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        if dnsmasq.poll() is not None:
            sys.exit("dnsmasq did not start")
        load = ("-c", "4", "-T", "2", "-q", "500")
        rates = {}
        servers = (
            ("dnsmasq", dnsmasq_port),
            ("embedded", ours.port),
            ("dnslib", plain_port),
            ("dnsmasq", dnsmasq_port),
        )
        for name, port in servers:
            rate, lost = qps(dnsperf(port, queries, args.seconds, *load))
            rates.setdefault(name, []).append(rate)
            print(f"  {name:9s} {rate:10.0f} q/s  (lost {lost})")
        baseline = max(rates["dnsmasq"])
        rate = rates["embedded"][0]
        fixed = {}
        for name, port in (("embedded", ours.port), ("dnsmasq", dnsmasq_port)):
            output = dnsperf(port, queries, args.seconds, "-Q", "1000", "-v")
            values = latencies(output)
            stats = (percentile(values, 50), percentile(values, 99), statistics.mean(values), len(values))
            fixed[name] = (*stats, qps(output)[1])
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(timeout=10)
        ours.stop()
        plain.stop()

    print()
    print(f"Measured: maximum UDP query rate, dnsperf on loopback, {args.records} A records, {args.seconds} s runs,")
    print("          clients=4 threads=2 outstanding=500; and latency at a fixed 1,000 q/s (dnsperf -Q 1000 -v).")
    print(f"  ours (embedded, {args.workers} UDP workers): {rate:10.0f} q/s")
    print(f"  baseline (dnsmasq, best of 2 runs):  {baseline:10.0f} q/s")
    print(f"  ratio: {rate / baseline:.1%} of dnsmasq (target >= 25 %)")
    plain_rate = rates["dnslib"][0]
    print(f"  for reference, a plain dnslib DNSServer: {plain_rate:.0f} q/s ({plain_rate / baseline:.1%} of dnsmasq)")
    for name, (p50, p99, mean, count, lost) in fixed.items():
        print(
            f"  {name:9s} at 1,000 q/s: p50 {p50 * 1e3:.3f} ms  p99 {p99 * 1e3:.3f} ms  mean {mean * 1e3:.3f} ms"
            f"  ({count} answers, lost {lost})"
        )
    print(f"  p99 target < 5 ms: {'met' if fixed['embedded'][1] < 0.005 else 'NOT met'}")
    print(f"  server counters: {ours.stats()}")


if __name__ == "__main__":
    main()
