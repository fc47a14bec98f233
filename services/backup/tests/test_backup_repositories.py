"""Backup -> restore round trips through the runner against real repositories: local, SFTP, REST and S3."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from backup_helpers import (
    Server,
    local_repo,
    make_restic,
    mixed_tree,
    read_tree,
    rest_repo,
    rest_server,
    s3_repo,
    s3_server,
    sftp_repo,
    sshd,
)

from homelab_backup.restic import Outcome, Repository
from homelab_backup.runner import Runner


def repository(kind: str, tmp_path: Path, servers: list[Server]) -> Repository:
    if kind == "local":
        return local_repo(tmp_path)
    if kind == "sftp":
        ssh = sshd(tmp_path / "sshd")
        ssh.server.start()
        servers.append(ssh.server)
        return sftp_repo(ssh, tmp_path / "sftp-repo")
    server = rest_server(tmp_path / "rest-storage") if kind == "rest" else s3_server()
    server.start()
    servers.append(server)
    return rest_repo(server) if kind == "rest" else s3_repo(server)


@pytest.mark.parametrize("kind", ["local", "sftp", "rest", "s3"])
def test_round_trip_is_byte_identical(kind: str, tmp_path: Path, servers: list[Server]) -> None:
    repo = repository(kind, tmp_path, servers)
    assert repo.kind == kind
    source = tmp_path / "volume"
    written = mixed_tree(source)
    runner = Runner(make_restic(tmp_path))

    backup = runner.backup(repo, "apps/data", source)
    assert backup.outcome is Outcome.ok, backup.message
    assert backup.files == len(written)
    assert backup.bytes == sum(len(d) for d in written.values())

    restored = runner.restore(repo, "apps/data", tmp_path / "restored")
    assert restored.outcome is Outcome.ok, restored.message
    assert read_tree(tmp_path / "restored") == written

    (tmp_path / "scratch").mkdir()
    drill = runner.drill(repo, "apps/data", tmp_path / "scratch")
    assert drill.outcome is Outcome.ok, drill.message
    assert drill.files == len(written)
    assert list((tmp_path / "scratch").iterdir()) == []  # the drill cleans its scratch space


def test_a_new_repository_is_created_only_when_the_site_says_so(tmp_path: Path) -> None:
    runner = Runner(make_restic(tmp_path))
    source = tmp_path / "volume"
    mixed_tree(source, files=3)
    existing_only = Repository("nas", str(tmp_path / "absent"), "pw", init=False)
    report = runner.backup(existing_only, "apps/data", source)
    assert report.outcome is Outcome.no_repository
    assert "init: true" in report.advice
    assert not (tmp_path / "absent").exists()
    new = Repository("nas", str(tmp_path / "absent"), "pw", init=True)
    assert runner.backup(new, "apps/data", source).outcome is Outcome.ok


def test_a_k3s_server_datastore_round_trips_and_drills(tmp_path: Path) -> None:
    """What a server node's Job mounts at /data: k3s's etcd snapshots directory and the server token."""
    source = tmp_path / "server"
    snapshots = source / "snapshots"
    snapshots.mkdir(parents=True)
    written = {}
    for i, stamp in enumerate((1796040000, 1796083200)):
        name = f"etcd-snapshot-server1-{stamp}"
        written[f"snapshots/{name}"] = random.Random(i).randbytes(700_000 + i)  # etcd's bbolt file, incompressible
        (snapshots / name).write_bytes(written[f"snapshots/{name}"])
    written["token"] = b"K10" + b"ab" * 32 + b"::server:" + b"cd" * 16 + b"\n"
    (source / "token").write_bytes(written["token"])
    for path in (source / "token", *snapshots.iterdir()):
        path.chmod(0o600)  # as k3s leaves them: root-only (the Job reads them with CAP_DAC_READ_SEARCH)
    runner = Runner(make_restic(tmp_path))
    repo = local_repo(tmp_path)
    report = runner.backup(repo, "k3s/server1", source)
    assert report.outcome is Outcome.ok, report.message
    assert report.files == 3
    (tmp_path / "scratch").mkdir()
    assert runner.drill(repo, "k3s/server1", tmp_path / "scratch").outcome is Outcome.ok
    assert runner.restore(repo, "k3s/server1", tmp_path / "out").ok
    assert read_tree(tmp_path / "out") == written


def test_retention_forgets_old_snapshots_and_their_manifests(tmp_path: Path) -> None:
    runner = Runner(make_restic(tmp_path))
    repo = local_repo(tmp_path)
    source = tmp_path / "volume"
    for round_ in range(2):
        mixed_tree(source, files=3, seed=round_)
        assert runner.backup(repo, "apps/data", source).ok
    report = runner.forget(repo, "apps/data", {"last": 1})
    assert report.ok, report.message
    assert report.details == {"kept": 1, "removed": 1}
    _, left = runner.snapshots(repo, "apps/data")
    assert len(left) == 1
    manifests = runner.call(repo, ["snapshots", "--tag", "kind=manifest"])
    assert [len(m) for m in manifests.messages if isinstance(m, list)] == [1]
    (tmp_path / "scratch").mkdir()
    assert runner.drill(repo, "apps/data", tmp_path / "scratch").ok
    refused = runner.forget(repo, "apps/data", {})
    assert refused.outcome is Outcome.failed
    assert "refusing" in refused.message


def test_restore_dry_run_lists_what_would_be_written_and_writes_nothing(tmp_path: Path) -> None:
    runner = Runner(make_restic(tmp_path))
    repo = local_repo(tmp_path)
    source = tmp_path / "volume"
    written = mixed_tree(source, files=5)
    assert runner.backup(repo, "apps/data", source).ok
    report = runner.restore(repo, "apps/data", tmp_path / "target", dry_run=True)
    assert report.ok
    assert sorted(f["path"].lstrip("/") for f in report.details["files"]) == sorted(written)
    assert not (tmp_path / "target").exists()
