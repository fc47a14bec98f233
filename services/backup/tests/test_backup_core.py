"""Pure parts: cron schedules and jitter, volume selection, Job reports, report compaction, classification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from homelab_backup.cli import MESSAGE_LIMIT, compact
from homelab_backup.core import job_report, select
from homelab_backup.restic import Outcome, classify
from homelab_backup.runner import Report
from homelab_backup.schedule import Cron, ScheduleError, due, next_slot, offset


def test_cron_fields_macros_ranges_and_steps() -> None:
    nightly = Cron.parse("30 2 * * 1-5")
    assert nightly.next(datetime(2026, 12, 4, 3, 0, tzinfo=UTC)) == datetime(2026, 12, 7, 2, 30, tzinfo=UTC)  # Fri->Mon
    assert Cron.parse("@weekly").previous(datetime(2026, 12, 2, tzinfo=UTC)) == datetime(2026, 11, 29, tzinfo=UTC)
    assert Cron.parse("*/15 * * * *").minutes == frozenset({0, 15, 30, 45})
    assert Cron.parse("0 0,12 1 * *").hours == frozenset({0, 12})
    for bad in ("every night", "61 * * * *", "* * * *", "*/0 * * * *", "5-1 * * * *"):
        with pytest.raises(ScheduleError):
            Cron.parse(bad)


def test_jitter_is_stable_spread_and_bounded() -> None:
    jitter = timedelta(minutes=120)
    offsets = {offset(f"apps/pvc-{i}", jitter) for i in range(50)}
    assert all(timedelta(0) <= o < jitter for o in offsets)
    assert len(offsets) > 40  # spread, not clumped
    assert offset("apps/data", jitter) == offset("apps/data", jitter)
    assert offset("apps/data", timedelta(0)) == timedelta(0)


def test_due_runs_each_slot_once() -> None:
    cron, jitter = Cron.parse("0 2 * * *"), timedelta(minutes=60)
    shift = offset("k", jitter)
    slot = datetime(2026, 12, 1, 2, 0, tzinfo=UTC) + shift
    assert due(cron, "k", jitter, slot - timedelta(seconds=1), datetime(2026, 11, 30, 12, tzinfo=UTC)) is None
    assert due(cron, "k", jitter, slot + timedelta(hours=1), datetime(2026, 11, 30, 12, tzinfo=UTC)) == slot
    assert due(cron, "k", jitter, slot + timedelta(hours=1), slot) is None
    assert next_slot(cron, "k", jitter, slot) == slot + timedelta(days=1)


def _obj(kind: str, ns: str, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    meta |= extra.pop("meta", {})
    return {"kind": kind, "metadata": meta, **extra}


def test_selection_ignores_finished_pods_and_our_own_jobs() -> None:
    volume = {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
    pods = [
        _obj("Pod", "apps", "old", spec={**volume, "nodeName": "node1"}, status={"phase": "Succeeded"}),
        _obj(
            "Pod",
            "apps",
            "backup-job",
            meta={"labels": {"app.kubernetes.io/managed-by": "homelab-backup"}},
            spec={**volume, "nodeName": "node9"},
            status={"phase": "Running"},
        ),
        _obj("Pod", "apps", "app", spec={**volume, "nodeName": "node2"}, status={"phase": "Running"}),
    ]
    pvcs = [
        _obj("PersistentVolumeClaim", "apps", "data", status={"phase": "Bound"}),
        _obj("PersistentVolumeClaim", "apps", "pending", status={"phase": "Pending"}),
        _obj(
            "PersistentVolumeClaim",
            "apps",
            "labelled",
            meta={"labels": {"backup.homelab.dev/enabled": "false"}},
            status={"phase": "Bound"},
        ),
    ]
    selection = select(pvcs, pods, [_obj("Namespace", "", "apps")])
    assert [(v.key, v.node, v.pods) for v in selection.volumes] == [("apps/data", "node2", ("app",))]
    assert selection.skipped == {"apps/pending": "not bound yet", "apps/labelled": "opted out on the PVC"}
    assert selection.problems == []


def test_a_job_without_a_report_is_a_failure_in_our_words() -> None:
    job = {
        "metadata": {"name": "j"},
        "status": {"failed": 1, "conditions": [{"type": "Failed", "message": "OOMKilled"}]},
    }
    assert job_report(job, []) == {
        "outcome": "failed",
        "message": "the runner left no report (killed, evicted, or out of time): OOMKilled",
    }
    assert job_report({"metadata": {"name": "j"}, "status": {"active": 1}}, []) is None


def test_a_long_report_is_trimmed_to_fit_a_termination_message() -> None:
    files = [{"path": f"/dir/file-{i:06d}", "size": i} for i in range(5000)]
    report = Report("restore", "nas", "apps/data", Outcome.ok, "dry run", details={"dry_run": True, "files": files})
    text = compact(report)
    assert len(text) <= MESSAGE_LIMIT
    data = json.loads(text)
    assert data["outcome"] == "ok"
    assert 0 < len(data["details"]["files"]) < 5000


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (0, "", Outcome.ok),
        (3, "at least one source file could not be read", Outcome.partial),
        (10, "", Outcome.no_repository),
        (11, "", Outcome.locked),
        (12, "", Outcome.wrong_password),
        (None, "", Outcome.timeout),
        (130, "", Outcome.interrupted),
        # restic 0.14 (Debian 12) exits 1 for all of these: the message decides
        (1, "Fatal: wrong password or no key found", Outcome.wrong_password),
        (
            1,
            "Fatal: unable to open config file: Stat: stat /x/config: no such file or directory\n"
            "Is there a repository at the following location?",
            Outcome.no_repository,
        ),
        (1, "Fatal: unable to create lock in backend: repository is already locked by PID 7", Outcome.locked),
        (1, "Save(<data/1234>) returned error: write /repo/data/12: no space left on device", Outcome.no_space),
        (1, "Fatal: repository contains errors", Outcome.corrupted),
        (1, "dial tcp 127.0.0.1:1: connect: connection refused", Outcome.unreachable),
        (1, "something else", Outcome.failed),
    ],
)
def test_classification(code: int | None, text: str, outcome: Outcome) -> None:
    assert classify(code, text) is outcome
