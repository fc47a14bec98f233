"""``homelab-backup run <action>``: what a Job runs. Prints progress lines, writes its report, exits 0 only on ok.

    homelab-backup run backup   --repository nas --target apps/data [--source /data]
    homelab-backup run backup   --repository nas --target gitea/db --from-pod   (the pod's k8up.io/backupcommand)
    homelab-backup run drill    --repository nas --target apps/data [--snapshot ID]
    homelab-backup run maintain --repository nas        (retention forget --prune, then check --read-data-subset)
    homelab-backup run restore  --repository nas --target apps/data [--snapshot ID] [--into /data] [--dry-run]

The report (JSON, the runner's :class:`~homelab_backup.runner.Report`) goes to ``HOMELAB_BACKUP_REPORT_FILE``
(default: the container's termination message, which the controller reads) and to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from homelab_backup.core import MOUNT
from homelab_backup.podexec import DumpPodError, PodExec, find_dump_pod
from homelab_backup.restic import Outcome, Repository, Restic
from homelab_backup.runner import Report, Runner
from homelab_backup.settings import Settings
from homelab_common.k8s import KubeConfigError, load_client

#: A termination message is cut at 4096 bytes by the kubelet; the lists in details are trimmed to fit.
MESSAGE_LIMIT = 4000


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="homelab-backup run", description="One backup action (what a Job runs)")
    parse.add_argument("action", choices=["backup", "drill", "maintain", "restore"])
    parse.add_argument("--repository", default="", help="the repository's name (default: HOMELAB_BACKUP_REPOSITORY)")
    parse.add_argument("--target", default="", help="namespace/pvc")
    parse.add_argument("--source", default=MOUNT, help="the volume's read-only mount (backup)")
    parse.add_argument(
        "--from-pod",
        action="store_true",
        help="back up the stdout of the k8up.io/backupcommand of the pod using the PVC, run inside that pod",
    )
    parse.add_argument("--snapshot", default="latest")
    parse.add_argument("--into", default=MOUNT, help="where a restore writes")
    parse.add_argument("--dry-run", action="store_true", help="restore: list what would be written, write nothing")
    return parse


def compact(report: Report) -> str:
    """The report as JSON that fits a termination message."""
    data = report.to_dict()
    text = json.dumps(data, separators=(",", ":"))
    details: dict[str, Any] = dict(data.get("details") or {})
    while len(text) > MESSAGE_LIMIT and details:
        longest = max(details, key=lambda k: len(json.dumps(details[k])))
        value = details[longest]
        details[longest] = value[: len(value) // 2] if isinstance(value, list) and len(value) > 1 else None
        if details[longest] is None:
            del details[longest]
        data["details"] = details
        text = json.dumps(data, separators=(",", ":"))
    if len(text) > MESSAGE_LIMIT:
        data["message"] = str(data["message"])[:500]
        text = json.dumps(data, separators=(",", ":"))
    return text


def maintain(runner: Runner, settings: Settings, name: str) -> Report:
    """Retention then a partial read check, in one Job, so they never fight over the repository's lock."""
    repo = settings.repository_named(name)
    started = time.monotonic()
    forgot = runner.forget(repo, "", settings.keep.model_dump())
    if not forgot.ok:
        return forgot
    checked = runner.check(repo, subset=settings.check_subset)
    result, listed = runner.snapshots(repo)
    checked.action = "maintain"
    checked.message = f"{forgot.message}; check: {checked.message}"
    checked.seconds = time.monotonic() - started
    checked.details = {**forgot.details, **({"snapshots": len(listed)} if result.ok else {})}
    return checked


def dump(runner: Runner, repo: Repository, target: str, api_client: kubernetes.client.ApiClient | None) -> Report:
    """A backup of the PVC's pod's dump command, exec'd in that pod (the Job's service account may do just that)."""
    namespace, _, claim = target.partition("/")
    try:
        client = api_client or load_client()
        pod = find_dump_pod(client, namespace, claim)
    except (DumpPodError, KubeConfigError, ApiException) as exc:
        message = str(exc) if not isinstance(exc, ApiException) else f"listing the pods of {namespace}: {exc.reason}"
        return Report("backup", repo.name, target, Outcome.failed, message)
    return runner.backup_command(repo, target, PodExec(client, pod), f"{claim}{pod.extension or '.dump'}")


def run(argv: list[str], settings: Settings, *, api_client: kubernetes.client.ApiClient | None = None) -> int:
    args = parser().parse_args(argv)
    runner = Runner(
        Restic(settings.restic, timeout=settings.timeout_seconds),
        stale_lock_seconds=settings.stale_lock_seconds,
    )
    name = args.repository or settings.repository
    try:
        repo = settings.repository_named(name)
    except KeyError as exc:
        print(f"homelab-backup run: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"{args.action} {args.target or ''} -> {repo.name} ({repo.kind})", flush=True)
    if args.action == "backup" and args.from_pod:
        report = dump(runner, repo, args.target, api_client)
    elif args.action == "backup":
        report = runner.backup(repo, args.target, Path(args.source))
    elif args.action == "drill":
        report = runner.drill(repo, args.target, Path(settings.scratch_dir), args.snapshot)
    elif args.action == "restore":
        report = runner.restore(repo, args.target, Path(args.into), args.snapshot, dry_run=args.dry_run)
    else:
        report = maintain(runner, settings, name)
    print(
        f"{report.action}: {report.outcome.value} in {report.seconds:.1f}s: {report.message}"
        + (f"\nnext: {report.advice}" if report.advice else ""),
        flush=True,
    )
    text = compact(report)
    print(text, flush=True)
    try:
        Path(settings.report_file).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"could not write the report to {settings.report_file}: {exc}", file=sys.stderr)
    return 0 if report.outcome is Outcome.ok else 1
