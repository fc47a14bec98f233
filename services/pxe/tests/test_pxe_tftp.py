"""TFTP: real downloads with blksize/tsize through tftpy's client, concurrency, and every refusal."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tftpy
from prometheus_client import REGISTRY

from homelab_pxe.tftp import PathRefused, TftpService, resolve

DEBIAN_IPXE = Path("/usr/lib/ipxe/ipxe.efi")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("tftp-root")
    root = tmp_path / "tftp"
    root.mkdir()
    payload = DEBIAN_IPXE.read_bytes() if DEBIAN_IPXE.exists() else os.urandom(1_000_003)
    (root / "ipxe.efi").write_bytes(payload)
    (root / "undionly.kpxe").write_bytes(os.urandom(70_000))
    (root / "sub").mkdir()
    (root / "sub" / "file.bin").write_bytes(b"in a subdirectory")
    secret = tmp_path / "secret.txt"
    secret.write_text("must never be served")
    (root / "escape").symlink_to(secret)
    (root / "dir-escape").symlink_to(tmp_path)
    (root / "alias.efi").symlink_to(root / "ipxe.efi")
    return root


@pytest.fixture(scope="module")
def tftp(root: Path) -> Iterator[TftpService]:
    service = TftpService(root, bind="127.0.0.1", port=0)
    service.start()
    yield service
    service.stop()


def client(service: TftpService, **options: int) -> tftpy.TftpClient:
    return tftpy.TftpClient("127.0.0.1", service.port, options=options)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("\\windows\\boot", "absolute"),
        ("../secret.txt", "parent-directory"),
        ("sub/../../secret.txt", "parent-directory"),
        ("sub/..", "parent-directory"),
        ("ipxe.efi\0.txt", "control-character"),
        ("ipxe\n.efi", "control-character"),
        ("escape", "outside-root"),
        ("dir-escape/secret.txt", "outside-root"),
        ("sub", "not-found"),
        ("missing.efi", "not-found"),
    ],
)
def test_resolve_refuses_names_outside_or_odd(root: Path, name: str, reason: str) -> None:
    with pytest.raises(PathRefused) as refused:
        resolve(root, name)
    assert refused.value.reason == reason


def test_resolve_allows_files_and_symlinks_inside_the_root(root: Path) -> None:
    assert resolve(root, "ipxe.efi") == (root / "ipxe.efi").resolve()
    assert resolve(root, "alias.efi") == (root / "ipxe.efi").resolve()
    assert resolve(root, "sub/file.bin") == (root / "sub" / "file.bin").resolve()


def test_download_with_blksize_and_tsize_is_byte_identical(tftp: TftpService, root: Path, tmp_path: Path) -> None:
    before = counter("homelab_pxe_tftp_transfers_total", result="complete")
    out = tmp_path / "got.efi"
    client(tftp, blksize=1468, tsize=0).download("ipxe.efi", str(out), timeout=5)
    assert out.read_bytes() == (root / "ipxe.efi").read_bytes()
    wait_for(lambda: counter("homelab_pxe_tftp_transfers_total", result="complete") == before + 1, "the count")


def test_download_without_options_uses_512_byte_blocks(tftp: TftpService, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "got.kpxe"
    client(tftp).download("undionly.kpxe", str(out), timeout=5)
    assert out.read_bytes() == (root / "undionly.kpxe").read_bytes()


def test_concurrent_downloads_are_all_served(tftp: TftpService, root: Path, tmp_path: Path) -> None:
    expected = (root / "ipxe.efi").read_bytes()
    errors: list[BaseException] = []

    def fetch(i: int) -> None:
        try:
            client(tftp, blksize=1468).download("ipxe.efi", str(tmp_path / f"c{i}.efi"), timeout=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert all((tmp_path / f"c{i}.efi").read_bytes() == expected for i in range(6))


def rrq(service: TftpService, request: bytes) -> tuple[int, bytes]:
    """Send a raw request; return (opcode, rest) of the first answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(request, ("127.0.0.1", service.port))
        data = sock.recv(2048)
    return struct.unpack("!H", data[:2])[0], data[2:]


@pytest.mark.parametrize(
    "name",
    [b"../secret.txt", b"/etc/passwd", b"escape", b"dir-escape/secret.txt", b"sub/../../secret.txt", b"sub"],
)
def test_refused_names_get_an_error_packet_over_the_wire(tftp: TftpService, name: bytes) -> None:
    opcode, rest = rrq(tftp, b"\x00\x01" + name + b"\x00octet\x00")
    assert opcode == 5  # ERROR, never DATA
    assert b"must never be served" not in rest


def test_nul_inside_the_name_is_never_served(tftp: TftpService) -> None:
    """tftpy splits the request at the NUL: the tail is an odd option list and the request is dropped."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"\x00\x01escape\x00../secret.txt\x00octet\x00", ("127.0.0.1", tftp.port))
        try:
            answer = sock.recv(2048)
        except TimeoutError:
            answer = b"\x00\x05(no answer)"
    assert answer[:2] == b"\x00\x05"


def test_upload_is_refused(tftp: TftpService, root: Path, tmp_path: Path) -> None:
    source = tmp_path / "evil.efi"
    source.write_bytes(b"x" * 1000)
    with pytest.raises(tftpy.TftpException):
        client(tftp).upload("evil.efi", str(source), timeout=3)
    assert not (root / "evil.efi").exists()


def test_edk2_probe_abort_after_oack_is_counted_quietly_then_the_download_works(
    tftp: TftpService, caplog: pytest.LogCaptureFixture, root: Path, tmp_path: Path
) -> None:
    before = counter("homelab_pxe_tftp_transfers_total", result="probe")
    failed = counter("homelab_pxe_tftp_transfers_total", result="failed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(
            b"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00",
            ("127.0.0.1", tftp.port),
        )
        oack, session = sock.recvfrom(2048)
        assert oack[:2] == b"\x00\x06"
        assert b"tsize\x00" + str((root / "ipxe.efi").stat().st_size).encode() in oack
        assert b"windowsize" not in oack  # not negotiated: EDK2 falls back to lock-step
        sock.sendto(b"\x00\x05\x00\x08\x00", session)  # error 8: option negotiation "failed" (on purpose)
    wait_for(lambda: counter("homelab_pxe_tftp_transfers_total", result="probe") == before + 1, "the probe count")
    assert counter("homelab_pxe_tftp_transfers_total", result="failed") == failed
    # only this transfer's records: the service is shared by the module's tests, and a worker process's log lines
    # reach the service process a moment later (an earlier test's refused upload may land here)
    loud = [r for r in caplog.records if r.levelno >= 30 and r.name.startswith(("homelab", "tftpy"))]
    assert not [r for r in loud if getattr(r, "file", "ipxe.efi") == "ipxe.efi"]
    out = tmp_path / "after.efi"
    client(tftp, blksize=1468).download("ipxe.efi", str(out), timeout=5)
    assert out.read_bytes() == (root / "ipxe.efi").read_bytes()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01ipxe.efi\x00octet\x00blksize\x00abc\x00",
        b"\x00\x01ipxe.efi\x00octet\x00blksize\x00",
        b"\x00\x01\xff\xfe\x00octet\x00",
        b"\x00\x09",
        b"\x00",
        b"\x00\x01ipxe.efi\x00octet\x00\xc3\x28\x00\x01\x00",
    ],
)
def test_malformed_requests_do_not_stop_the_server(
    tftp: TftpService, root: Path, tmp_path: Path, garbage: bytes
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(garbage, ("127.0.0.1", tftp.port))
    out = tmp_path / "after.kpxe"
    client(tftp).download("undionly.kpxe", str(out), timeout=5)
    assert out.read_bytes() == (root / "undionly.kpxe").read_bytes()


def test_port_in_use_fails_at_start(root: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        service = TftpService(root, bind="127.0.0.1", port=taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            service.start()


def test_malformed_option_is_counted(tftp: TftpService) -> None:
    before = counter("homelab_pxe_tftp_errors_total", reason="malformed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01ipxe.efi\x00octet\x00blksize\x00abc\x00", ("127.0.0.1", tftp.port))
    wait_for(lambda: counter("homelab_pxe_tftp_errors_total", reason="malformed") == before + 1, "the count")


def test_a_worker_process_that_dies_is_replaced_and_serving_goes_on(root: Path, tmp_path: Path) -> None:
    service = TftpService(root, bind="127.0.0.1", port=0, workers=2)
    service.start()
    try:
        before = counter("homelab_pxe_tftp_errors_total", reason="server")
        victim = service._workers[0].process
        os.kill(victim.pid, 9)  # type: ignore[arg-type]
        wait_for(lambda: victim not in [w.process for w in service._workers], "the replacement", timeout=120)
        assert service.running
        assert counter("homelab_pxe_tftp_errors_total", reason="server") == before + 1
        for i in range(3):  # whichever worker gets them
            client(service, blksize=1468).download("ipxe.efi", str(tmp_path / f"{i}.efi"), timeout=5)
            assert (tmp_path / f"{i}.efi").read_bytes() == (root / "ipxe.efi").read_bytes()
    finally:
        service.stop()
    assert not service.running


def test_requests_beyond_the_session_limit_get_a_busy_error(root: Path) -> None:
    service = TftpService(root, bind="127.0.0.1", port=0, workers=1, max_sessions=1)
    service.start()
    before = counter("homelab_pxe_tftp_errors_total", reason="busy")
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
        ):
            first.settimeout(10)
            second.settimeout(10)
            first.sendto(b"\x00\x01ipxe.efi\x00octet\x00", ("127.0.0.1", service.port))
            assert first.recv(2048)[:2] == b"\x00\x03"  # DATA block 1, left unacknowledged: the session stays
            second.sendto(b"\x00\x01ipxe.efi\x00octet\x00", ("127.0.0.1", service.port))
            answer = second.recv(2048)
        assert answer[:4] == b"\x00\x05\x00\x00"
        assert b"busy" in answer
        assert counter("homelab_pxe_tftp_errors_total", reason="busy") == before + 1
    finally:
        service.stop()
