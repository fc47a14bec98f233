#!/usr/bin/env python3
"""20 PXE clients at once, simulated on the wire: our pxe service vs dnsmasq (proxy-DHCP + TFTP), same run.

Each client does what OVMF's own PXE client does (its packets are built from the reference capture): broadcast
DISCOVER to UDP 67 -> OFFER, REQUEST to the boot server on UDP 4011 -> ACK naming the boot file, then TFTP of that
file (Debian's ipxe.efi) with ``blksize 1468`` and ``tsize``. All clients start together (a barrier); each is its
own process so the clients do not share a GIL. The servers run in one network namespace, the clients in another,
joined by a veth pair. Measured: per-client time from DISCOVER sent to the last TFTP block received; p50 and p99
over all clients of all rounds; the ratio ours / dnsmasq (lower is better for us).

Run as root:  .venv/bin/python benchmarks/pxe_clients.py [--clients 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

# Unique per run (the parent's PID, handed to the client processes) so concurrent runs on one host never collide.
RUN_ID = os.environ.setdefault("PXEBENCH_RUN_ID", str(os.getpid()))
SERVER_NS, CLIENT_NS = f"pxebench-srv-{RUN_ID}", f"pxebench-cli-{RUN_ID}"
SERVER_IF, CLIENT_IF = f"pxbs{RUN_ID}"[:15], f"pxbc{RUN_ID}"[:15]
SERVER_IP, CLIENT_IP, NET = "10.98.0.2", "10.98.0.10", "10.98.0.0"
ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "services" / "pxe" / "tests" / "fixtures" / "pcap" / "ovmf-edk2-pxe-then-ipxe.pcap"
BOOT_FILE = Path("/usr/lib/ipxe/ipxe.efi")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def setup_lan() -> None:
    teardown_lan()
    ip("netns", "add", SERVER_NS)
    ip("netns", "add", CLIENT_NS)
    ip("link", "add", SERVER_IF, "netns", SERVER_NS, "type", "veth", "peer", CLIENT_IF, "netns", CLIENT_NS)
    for ns, dev, addr in ((SERVER_NS, SERVER_IF, SERVER_IP), (CLIENT_NS, CLIENT_IF, CLIENT_IP)):
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "link", "set", "lo", "up")


def teardown_lan() -> None:
    for ns in (SERVER_NS, CLIENT_NS):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


# --- servers -----------------------------------------------------------------------------------------------


def start_ours(tftp_root: Path, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOMELAB_SECRETS_DIR": str(work / "no-secrets"),
        "HOMELAB_HTTP_BIND": f"{SERVER_IP}:8080",
        "HOMELAB_PXE_INTERFACE": SERVER_IF,
        "HOMELAB_PXE_TFTP_ROOT": str(tftp_root),
        "HOMELAB_PXE_ASSETS_DIR": str(work),
        "HOMELAB_PXE_LOG_LEVEL": "WARNING",
    }
    exe = str(Path(sys.executable).parent / "homelab-pxe")
    return subprocess.Popen(in_ns(SERVER_NS, [exe]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_dnsmasq(tftp_root: Path, work: Path) -> subprocess.Popen[bytes]:
    """dnsmasq as the boot server only: no DNS (port 0), proxy DHCP on the LAN, a PXE menu of one item, TFTP."""
    argv = [
        shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--pid-file={work / 'dnsmasq.pid'}",
        "--port=0",
        f"--interface={SERVER_IF}",
        f"--dhcp-range={NET},proxy",
        "--pxe-service=x86-64_EFI,Boot iPXE,ipxe.efi",
        "--pxe-service=BC_EFI,Boot iPXE,ipxe.efi",
        "--pxe-service=x86PC,Boot iPXE,undionly.kpxe",
        "--enable-tftp",
        f"--tftp-root={tftp_root}",
        "--user=root",
        "--log-facility=/dev/null",
    ]
    return subprocess.Popen(in_ns(SERVER_NS, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- clients (run inside the client namespace) -------------------------------------------------------------


def _templates() -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT / "services" / "pxe" / "tests"))
    from pxe_pcap import dhcp_datagrams

    from homelab_pxe.dhcp import decode

    datagrams = dhcp_datagrams(CAPTURE)
    discover = decode(datagrams[0].payload)  # OVMF's own PXE client, arch 7
    return discover, discover


def pxe_vendor_item(offer_43: bytes) -> int:
    """The first boot item type from a PXE boot menu (sub-option 9), or 0 when the offer has none.

    dnsmasq sends UEFI clients no menu when exactly one service matches their architecture (its "UEFI
    workaround"); the client then asks on 4011 without a boot item and gets the file in the ACK. We send no menu
    either (discovery control 8); the simulated client still does the 4011 round trip with both servers.
    """
    index = 0
    while index + 1 < len(offer_43):
        code, length = offer_43[index], offer_43[index + 1]
        if code == 255:
            break
        if code == 9 and length >= 2:
            return int.from_bytes(offer_43[index + 2 : index + 4], "big")
        index += 2 + length
    return 0


def one_client(number: int, barrier: Any, expected_size: int, results: Any) -> None:
    try:
        _one_client(number, barrier, expected_size, results)
    except BaseException as exc:  # always report, or the parent waits for nothing
        results.put({"client": number, "ok": False, "error": f"{type(exc).__name__}: {exc}"})


def _one_client(number: int, barrier: Any, expected_size: int, results: Any) -> None:
    import tftpy

    from homelab_pxe.dhcp import ACK, OFFER, decode, encode

    discover_template, _ = _templates()
    rng = random.Random(number * 7919 + os.getpid())
    xid = rng.getrandbits(32)
    mac = bytes([0x52, 0x54, 0x00, 0xBE, 0x00, number])
    chaddr = mac + bytes(10)
    discover = replace(discover_template, xid=xid, chaddr=chaddr)
    bcast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bcast.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bcast.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    bcast.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, CLIENT_IF.encode())
    bcast.bind(("0.0.0.0", 68))
    bcast.settimeout(10)
    unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unicast.bind((CLIENT_IP, 0))
    unicast.settimeout(10)
    outcome: dict[str, Any] = {"client": number}
    try:
        barrier.wait(timeout=60)
        started = time.perf_counter()
        bcast.sendto(encode(discover), ("255.255.255.255", 67))
        while True:
            offer = decode(bcast.recv(2048))
            if offer.xid == xid and offer.message_type == OFFER and 60 in offer.options:
                break
        t_offer = time.perf_counter()
        item = pxe_vendor_item(offer.options.get(43, b""))
        options = {
            53: b"\x03",
            55: discover.options[55],
            97: discover.options[97],
            94: discover.options[94],
            93: discover.options[93],
            60: discover.options[60],
        }
        if item:  # a boot menu was offered: ask for its first item (PXE sub-option 71, layer 0)
            options[43] = bytes((71, 4)) + item.to_bytes(2, "big") + b"\x00\x00\xff"
        request = replace(discover, ciaddr=IPv4Address(CLIENT_IP), flags=0, options=options)
        unicast.sendto(encode(request), (SERVER_IP, 4011))
        while True:
            ack = decode(unicast.recv(2048))
            if ack.xid == xid and ack.message_type == ACK:
                break
        t_ack = time.perf_counter()
        bootfile = (ack.file or ack.options.get(67, b"")).decode()
        out = io.BytesIO()
        tftpy.TftpClient(SERVER_IP, 69, options={"blksize": 1468, "tsize": 0}).download(bootfile, out, timeout=5)
        done = time.perf_counter()
        if len(out.getvalue()) != expected_size:
            raise RuntimeError(f"got {len(out.getvalue())} bytes of {bootfile}, expected {expected_size}")
        outcome.update(ok=True, total=done - started, dhcp=t_ack - started, offer=t_offer - started, file=bootfile)
    except Exception as exc:
        outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        bcast.close()
        unicast.close()
    results.put(outcome)


def run_clients(count: int, expected_size: int) -> list[dict[str, Any]]:
    import logging

    logging.disable(logging.CRITICAL)  # tftpy's client logs every packet at INFO
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    processes = [ctx.Process(target=one_client, args=(n, barrier, expected_size, results)) for n in range(count)]
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for p in processes:
        p.join(timeout=30)
    return sorted(outcomes, key=lambda o: o["client"])


def wait_until_serving(expected_size: int, deadline_s: float = 180) -> None:
    """One probe client until the server answers (both servers take a moment to bind)."""
    deadline = time.monotonic() + deadline_s
    while True:
        outcome = clients_in_ns(1, expected_size)[0]
        if outcome["ok"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server never answered: {outcome}")
        time.sleep(0.5)


def clients_in_ns(count: int, expected_size: int) -> list[dict[str, Any]]:
    done = subprocess.run(
        in_ns(CLIENT_NS, [sys.executable, __file__, "--as-clients", str(count), "--size", str(expected_size)]),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--as-clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_clients:
        print(json.dumps(run_clients(args.as_clients, args.size)))
        return 0
    if os.geteuid() != 0:
        print("pxe_clients: needs root (network namespaces, UDP 67/69/4011)", file=sys.stderr)
        return 2
    if not BOOT_FILE.exists() or shutil.which("dnsmasq") is None:
        print("pxe_clients: needs Debian's ipxe and dnsmasq-base packages", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pxebench-"))
    tftp_root = work / "tftp"
    tftp_root.mkdir()
    shutil.copyfile(BOOT_FILE, tftp_root / "ipxe.efi")  # copyfile follows Debian's symlink to /boot/ipxe.efi
    size = (tftp_root / "ipxe.efi").stat().st_size
    servers = {"ours (homelab-pxe)": start_ours, "dnsmasq 2.90 proxy+tftp": start_dnsmasq}
    totals: dict[str, list[float]] = {name: [] for name in servers}
    dhcp: dict[str, list[float]] = {name: [] for name in servers}
    failures: dict[str, list[str]] = {name: [] for name in servers}
    setup_lan()
    try:
        for round_no in range(args.rounds):
            order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
            for name in order:
                process = servers[name](tftp_root, work)
                try:
                    wait_until_serving(size)
                    outcomes = clients_in_ns(args.clients, size)
                finally:
                    stop(process)
                for outcome in outcomes:
                    if outcome["ok"]:
                        totals[name].append(outcome["total"])
                        dhcp[name].append(outcome["dhcp"])
                    else:
                        failures[name].append(outcome["error"])
                ok = [o["total"] for o in outcomes if o["ok"]]
                print(
                    f"round {round_no + 1} {name:26s} served {len(ok)}/{args.clients}"
                    + (f"  p50 {statistics.median(ok) * 1000:7.1f} ms  max {max(ok) * 1000:7.1f} ms" if ok else ""),
                    flush=True,
                )
    finally:
        teardown_lan()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"Measured: {args.clients} simulated PXE clients at once (DISCOVER->OFFER on 67, REQUEST->ACK on 4011, "
        f"TFTP of ipxe.efi {size} bytes, blksize 1468 + tsize), {args.rounds} rounds; per-client seconds from "
        "DISCOVER to last TFTP block."
    )
    for name in servers:
        values = totals[name]
        served = f"{len(values)}/{args.clients * args.rounds} served"
        if values:
            p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
            d50, d99 = percentile(dhcp[name], 50) * 1000, percentile(dhcp[name], 99) * 1000
            print(
                f"  {name:26s} {served}  total p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
                f"   DHCP part p50 {d50:6.1f} ms  p99 {d99:6.1f} ms"
            )
        else:
            print(f"  {name:26s} {served}")
        for error in sorted(set(failures[name]))[:5]:
            print(f"    failure: {error}")
    ours, base = (totals[name] for name in servers)
    if ours and base:
        print(
            f"Ratio ours/dnsmasq: p50 {percentile(ours, 50) / percentile(base, 50):.2f}x, "
            f"p99 {percentile(ours, 99) / percentile(base, 99):.2f}x"
        )
    all_served = all(len(totals[name]) == args.clients * args.rounds for name in servers)
    return 0 if all_served else 1


if __name__ == "__main__":
    sys.exit(main())
