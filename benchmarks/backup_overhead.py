"""Backup runner overhead: ``homelab-backup run backup`` against raw ``restic backup`` on the same data.

Measures, in one run on the same machine, into fresh local repositories (the same repository type for both):
  1. wall time of a first (full) backup: raw restic, then the runner (checksum manifest, restic with --json, the
     manifest snapshot, the report); the order alternates over the rounds and the medians are compared;
  2. the runner's memory: peak RSS of the Python process (sampled from /proc) and of restic under it;
  3. a restore drill of that data (restore to scratch + compare with the manifest) against raw ``restic restore``:
     time and throughput.
Target: runner wall time <= 105 % of raw restic's.

    uv run --frozen --no-sync python benchmarks/backup_overhead.py [--size-mb 1024] [--rounds 3]

The data is "mixed": half incompressible random files, half compressible text, from 4 KiB to 8 MiB, in nested
directories (seeded, so every run backs up the same bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESTIC = str(ROOT / ".cache" / "bin" / "restic")
PASSWORD = "benchmark password"


def make_data(root: Path, size_mb: int, seed: int = 11) -> tuple[int, int]:
    rng = random.Random(seed)
    total, files, target = 0, 0, size_mb * 1024 * 1024
    text = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog\n".encode() for i in range(200_000))
    while total < target:
        size = min(int(4096 * 2 ** rng.uniform(0, 11)), target - total)
        path = root / f"d{files % 7}" / f"e{files % 5}" / f"file-{files}.{'bin' if files % 2 else 'txt'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if files % 2:
            path.write_bytes(rng.randbytes(size))
        else:
            start = rng.randrange(0, len(text) - size) if size < len(text) else 0
            path.write_bytes(text[start : start + size])
        total += size
        files += 1
    return total, files


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KiB) of the process and of its children (sampled every 20 ms)."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = [0, 0]

    def sample() -> None:
        while process.poll() is None:
            peaks[0] = max(peaks[0], rss_kib(process.pid))
            peaks[1] = max([peaks[1], *(rss_kib(c) for c in children(process.pid))])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    seconds = time.monotonic() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return seconds, peaks[0], peaks[1]


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--size-mb", type=int, default=1024)
    parse.add_argument("--rounds", type=int, default=3)
    args = parse.parse_args()
    if not Path(RESTIC).exists():
        raise SystemExit("restic 0.18 missing: run ./task deps")
    with tempfile.TemporaryDirectory(prefix="backup-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        data = work / "data"
        t0 = time.monotonic()
        size, files = make_data(data, args.size_mb)
        print(f"data: {files} files, {size / 2**20:.0f} MiB (made in {time.monotonic() - t0:.1f}s)", flush=True)
        (work / "password").write_text(PASSWORD)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HOMELAB_", "RESTIC_"))}
        raw_env = base | {"RESTIC_PASSWORD_FILE": str(work / "password"), "RESTIC_CACHE_DIR": str(work / "cache")}
        raw_times: list[float] = []
        ours_times: list[float] = []
        ours_rss: list[int] = []
        restic_rss: list[int] = []
        for round_ in range(args.rounds):
            raw_repo, our_repo = work / f"raw-{round_}", work / f"ours-{round_}"
            for repo in (raw_repo, our_repo):
                subprocess.run([RESTIC, "init", "-r", str(repo), "-q"], env=raw_env, check=True)
            repos = [{"name": "bench", "url": str(our_repo), "password": PASSWORD}]
            ours_env = base | {
                "HOMELAB_SECRETS_DIR": str(work / "no-secrets"),
                "HOMELAB_BACKUP_REPOSITORIES": json.dumps(repos),
                "HOMELAB_BACKUP_RESTIC": RESTIC,
                "HOMELAB_BACKUP_REPORT_FILE": str(work / "report.json"),
                "HOMELAB_BACKUP_SCRATCH_DIR": str(work),
                "HOMELAB_BACKUP_LOG_LEVEL": "WARNING",
                "RESTIC_CACHE_DIR": str(work / "cache"),
            }
            raw = [RESTIC, "backup", ".", "-r", str(raw_repo), "--json", "--host", "apps.data"]
            ours = [sys.executable, "-m", "homelab_backup", "run", "backup", "--repository", "bench"]
            ours += ["--target", "apps/data", "--source", str(data)]
            runs = [("raw", raw), ("ours", ours)] if round_ % 2 == 0 else [("ours", ours), ("raw", raw)]
            for name, argv in runs:
                seconds, peak, child_peak = timed(argv, raw_env if name == "raw" else ours_env, cwd=data)
                if name == "raw":
                    raw_times.append(seconds)
                else:
                    ours_times.append(seconds)
                    ours_rss.append(peak)
                    restic_rss.append(child_peak)
                print(f"round {round_ + 1}: {name:4} {seconds:7.2f}s", flush=True)
        raw_median, ours_median = statistics.median(raw_times), statistics.median(ours_times)
        print()
        print(f"backup of {size / 2**20:.0f} MiB ({files} files), median of {args.rounds}:")
        print(f"  raw restic backup        {raw_median:7.2f}s  ({size / 2**20 / raw_median:6.1f} MiB/s)")
        print(f"  homelab-backup run       {ours_median:7.2f}s  ({size / 2**20 / ours_median:6.1f} MiB/s)")
        print(f"  ratio                    {ours_median / raw_median:7.3f}  (goal <= 1.05)")
        print(f"  runner peak RSS          {max(ours_rss) / 1024:7.1f} MiB (Python), restic under it "
              f"{max(restic_rss) / 1024:.1f} MiB")  # fmt: skip

        last = args.rounds - 1
        last_repo = [{"name": "bench", "url": str(work / f"ours-{last}"), "password": PASSWORD}]
        drill_env = ours_env | {"HOMELAB_BACKUP_REPOSITORIES": json.dumps(last_repo)}
        drill = [
            sys.executable,
            "-m",
            "homelab_backup",
            "run",
            "drill",
            "--repository",
            "bench",
            "--target",
            "apps/data",
        ]
        drill_seconds, drill_rss, _ = timed(drill, drill_env)
        report = json.loads((work / "report.json").read_text())
        assert report["outcome"] == "ok", report
        target = work / "raw-restore"
        restore = [RESTIC, "restore", "latest", "-r", str(work / f"raw-{last}"), "--target", str(target), "--json"]
        restore_seconds, _, _ = timed(restore, raw_env)
        print()
        print(f"restore drill of {size / 2**20:.0f} MiB ({report['files']} files verified):")
        print(f"  raw restic restore       {restore_seconds:7.2f}s  ({size / 2**20 / restore_seconds:6.1f} MiB/s)")
        print(f"  drill (restore + verify) {drill_seconds:7.2f}s  ({size / 2**20 / drill_seconds:6.1f} MiB/s), "
              f"runner peak RSS {drill_rss / 1024:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
