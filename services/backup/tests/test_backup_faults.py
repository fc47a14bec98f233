"""Real faults against real repositories: each is classified, reported, and never taken for a success."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_helpers import (
    PASSWORD,
    Server,
    local_repo,
    make_restic,
    mixed_tree,
    rest_repo,
    rest_server,
    restic_binary,
)

from homelab_backup.restic import Outcome, Repository
from homelab_backup.runner import Runner


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Runner, Repository, Path]:
    runner = Runner(make_restic(tmp_path))
    repo = local_repo(tmp_path)
    source = tmp_path / "volume"
    mixed_tree(source, files=12)
    report = runner.backup(repo, "apps/data", source)
    assert report.ok, report.message
    (tmp_path / "scratch").mkdir()
    return runner, repo, source


def test_wrong_password_is_reported_as_such_everywhere(backed_up: tuple[Runner, Repository, Path]) -> None:
    runner, repo, source = backed_up
    wrong = Repository(repo.name, repo.url, "not the password", init=True)
    for report in (
        runner.backup(wrong, "apps/data", source),
        runner.check(wrong),
        runner.drill(wrong, "apps/data", source.parent / "scratch"),
    ):
        assert report.outcome is Outcome.wrong_password, report
        assert "password" in report.advice
    assert len(runner.snapshots(repo, "apps/data")[1]) == 1  # init: true never re-initialises an existing repository


def test_missing_repository_is_not_created_behind_the_users_back(tmp_path: Path) -> None:
    runner = Runner(make_restic(tmp_path))
    gone = Repository("usb", str(tmp_path / "unplugged"), PASSWORD)
    assert runner.check(gone).outcome is Outcome.no_repository
    assert runner.drill(gone, "apps/data", tmp_path).outcome is Outcome.no_repository
    assert not (tmp_path / "unplugged").exists()


@pytest.fixture
def lock_holder(backed_up: tuple[Runner, Repository, Path]) -> Iterator[subprocess.Popen[bytes]]:
    """A restic on 'another host' in the middle of a backup (stdin held open): it holds a lock on the repository."""
    _, repo, _ = backed_up
    env = {**os.environ, "RESTIC_REPOSITORY": repo.url, "RESTIC_PASSWORD": PASSWORD}
    script = 'hostname other-node && exec "$@"'
    argv = ["unshare", "--uts", "sh", "-c", script, "sh", restic_binary(), "backup", "--stdin", "--no-cache"]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    locks = Path(repo.url) / "locks"
    deadline = time.monotonic() + 60
    while not any(locks.iterdir()):
        assert holder.poll() is None, holder.stderr.read() if holder.stderr else b""
        assert time.monotonic() < deadline, "the holder never took its lock"
        time.sleep(0.05)
    yield holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()
    for stream in (holder.stdin, holder.stderr):
        if stream is not None:
            stream.close()


def test_a_live_lock_is_respected_and_reported(
    backed_up: tuple[Runner, Repository, Path], lock_holder: subprocess.Popen[bytes]
) -> None:
    runner, repo, _ = backed_up
    runner.stale_lock_seconds = 3600
    report = runner.check(repo)
    assert report.outcome is Outcome.locked
    assert "another restic" in report.message
    assert any((Path(repo.url) / "locks").iterdir())  # the holder's lock is still there
    assert lock_holder.poll() is None


def test_a_stale_lock_is_removed_and_the_call_retried(
    backed_up: tuple[Runner, Repository, Path], lock_holder: subprocess.Popen[bytes]
) -> None:
    runner, repo, _ = backed_up
    restic = make_restic(Path(repo.url).parent)
    # the holder's lock is whole (restic itself sees it) before the holder dies: the lock file appears before its
    # content is written, and a killed writer would leave a lock restic ignores
    assert restic.run(repo, ["check"]).outcome is Outcome.locked
    lock_holder.kill()  # dies holding the lock; restic cannot tell (another host's PID)
    lock_holder.wait()
    assert restic.run(repo, ["check"]).outcome is Outcome.locked
    time.sleep(1.0)
    runner.stale_lock_seconds = 0.5
    report = runner.check(repo)
    assert report.outcome is Outcome.ok, report.message
    assert not any((Path(repo.url) / "locks").iterdir())


def test_a_corrupted_pack_is_caught_by_check_and_fails_the_drill(
    backed_up: tuple[Runner, Repository, Path],
) -> None:
    runner, repo, source = backed_up
    packs = sorted((Path(repo.url) / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    pack = packs[-1]
    data = bytearray(pack.read_bytes())
    for offset in range(100, len(data) - 100, max(1, len(data) // 16)):
        data[offset] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    check = runner.check(repo, subset="100%")
    assert check.outcome is Outcome.corrupted, check
    assert "repair" in check.advice
    drill = runner.drill(repo, "apps/data", source.parent / "scratch")
    assert drill.outcome is Outcome.corrupted, drill
    assert not drill.ok


def test_server_killed_mid_backup_then_the_next_run_completes_and_checks_clean(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = rest_server(tmp_path / "rest-storage")
    server.start()
    servers.append(server)
    repo = rest_repo(server)
    source = tmp_path / "volume"
    mixed_tree(source, files=16, size=1024 * 1024, seed=3)  # 16 MB, half incompressible
    runner = Runner(make_restic(tmp_path, timeout=15.0))  # restic retries a dead server for minutes: our deadline
    reports = []
    thread = threading.Thread(target=lambda: reports.append(runner.backup(repo, "apps/data", source)))
    thread.start()
    data = tmp_path / "rest-storage" / "data"
    deadline = time.monotonic() + 60
    while not (data.exists() and any(p.is_file() for p in data.rglob("*"))):
        assert time.monotonic() < deadline, "no pack reached the server"
        assert thread.is_alive(), reports
        time.sleep(0.02)
    server.kill()
    thread.join(timeout=120)
    (killed,) = reports
    assert not killed.ok
    assert killed.outcome in (Outcome.timeout, Outcome.unreachable), killed
    server.start()
    runner = Runner(make_restic(tmp_path))
    again = runner.backup(repo, "apps/data", source)
    assert again.outcome is Outcome.ok, again.message
    check = runner.check(repo, subset="100%")
    assert check.outcome is Outcome.ok, check.message
    (tmp_path / "scratch").mkdir()
    assert runner.drill(repo, "apps/data", tmp_path / "scratch").ok


@pytest.mark.root
def test_a_full_repository_disk_is_reported_as_no_space(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    try:
        runner = Runner(make_restic(tmp_path, timeout=120.0))
        repo = Repository("usb", str(small / "repo"), PASSWORD, init=True)
        source = tmp_path / "volume"
        (source).mkdir()
        (source / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
        report = runner.backup(repo, "apps/data", source)
        assert report.outcome is Outcome.no_space, report
        assert "full" in report.advice
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)


def test_a_file_changing_while_read_makes_the_backup_partial(tmp_path: Path) -> None:
    runner = Runner(make_restic(tmp_path))
    repo = local_repo(tmp_path)
    source = tmp_path / "volume"
    mixed_tree(source, files=6)
    log = source / "app.log"
    log.write_bytes(b"start\n")
    stop = threading.Event()

    def write() -> None:
        with log.open("ab") as handle:
            while not stop.is_set():
                handle.write(b"a line the app keeps writing\n")
                handle.flush()
                time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        report = runner.backup(repo, "apps/data", source)
    finally:
        stop.set()
        writer.join()
    assert report.outcome is Outcome.partial, report
    assert report.details["changed"] == ["app.log"]
    assert "changed while being read" in report.message
    (tmp_path / "scratch").mkdir()
    drill = runner.drill(repo, "apps/data", tmp_path / "scratch")
    assert drill.ok, drill.message  # the rest verifies; the changed file is not claimed to be verified
    assert drill.files == 8


def test_unreadable_files_make_the_backup_partial(tmp_path: Path) -> None:
    # root reads anything: drop the capabilities that let it (restic then sees EACCES like any other user)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    runner = Runner(make_restic(tmp_path, command_prefix=prefix))
    repo = local_repo(tmp_path)
    source = tmp_path / "volume"
    mixed_tree(source, files=4)
    secret = source / "secret.key"
    secret.write_bytes(b"root only")
    secret.chmod(0)
    report = runner.backup(repo, "apps/data", source)
    assert report.outcome is Outcome.partial, report
    assert "secret.key" in report.message
    assert report.snapshot  # restic still made a snapshot of the rest: kept, but not a success
