"""The installer assets stage against a release served on loopback: a small ISO with Ubuntu's layout, a SHA256SUMS
signed by a throwaway key this module makes with gpg, verified by the real gpgv; every refusal leaves nothing to
serve. (The VM that boots through these assets is in tests/e2e/test_provisioning.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from homelab_bootstrap import assets
from homelab_bootstrap.assets import AssetsError, Source, Trust
from homelab_bootstrap.lab.release import Mirror, SigningKey, build_iso, write_sums
from homelab_common.site import parse_site

ISO = "ubuntu-24.04.9-live-server-amd64.iso"
KERNEL, INITRD = b"stand-in kernel " * 1000, b"stand-in initrd " * 3000


@dataclass
class Release:
    directory: Path
    trust: Trust
    other: SigningKey
    signer: SigningKey
    requests: list[str] = field(default_factory=list)

    def source(self, url: str) -> Source:
        return Source("amd64", "24.04.9", url, ISO)


@pytest.fixture(scope="module")
def keys() -> Iterator[tuple[SigningKey, SigningKey]]:
    with SigningKey() as signer, SigningKey("someone else <x@example.invalid>") as other:
        yield signer, other


@pytest.fixture
def release(tmp_path: Path, keys: tuple[SigningKey, SigningKey]) -> Release:
    signer, other = keys
    directory = tmp_path / "mirror"
    directory.mkdir()
    (tmp_path / "vmlinuz").write_bytes(KERNEL)
    (tmp_path / "initrd").write_bytes(INITRD)
    build_iso(tmp_path / "vmlinuz", tmp_path / "initrd", directory / ISO)
    signer.sign(write_sums(directory, [ISO]), directory / "SHA256SUMS.gpg")
    return Release(directory, Trust(signer.export(tmp_path / "key.asc"), signer.fingerprint), other, signer)


@pytest.fixture
def mirror(release: Release) -> Iterator[str]:
    with Mirror(release.directory) as served:
        yield served.url


def ensure(release: Release, url: str, tmp_path: Path) -> assets.Published:
    lines: list[str] = []
    return assets.ensure(release.source(url), release.trust, tmp_path / "cache", tmp_path / "assets", lines.append,
                         progress=None)  # fmt: skip


def nothing_served(tmp_path: Path) -> bool:
    return not (tmp_path / "assets" / "amd64").exists()


def test_verified_release_is_extracted_and_laid_out_for_pxe(release: Release, mirror: str, tmp_path: Path) -> None:
    published = ensure(release, mirror, tmp_path)
    served = tmp_path / "assets" / "amd64"
    assert (served / "vmlinuz").read_bytes() == KERNEL
    assert (served / "initrd").read_bytes() == INITRD
    iso = (release.directory / ISO).read_bytes()
    assert (served / "live-server.iso").read_bytes() == iso
    assert published.sha256 == hashlib.sha256(iso).hexdigest()
    assert json.loads((served / "release.json").read_text())["version"] == "24.04.9"
    assert published.downloaded_bytes > len(iso)  # the ISO and the two SHA256SUMS files


def test_a_rerun_downloads_nothing(release: Release, tmp_path: Path) -> None:
    with Mirror(release.directory) as served:
        ensure(release, served.url, tmp_path)
    # the mirror is gone: anything the second run tried to fetch would fail
    again = ensure(release, "http://127.0.0.1:9/", tmp_path)
    assert again.downloaded_bytes == 0
    assert (tmp_path / "assets" / "amd64" / "vmlinuz").read_bytes() == KERNEL


class Truncating(BaseHTTPRequestHandler):
    """Announces the whole file, sends the first half, hangs up; answers a Range request properly."""

    directory: Path
    ranges: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = (self.directory / self.path.lstrip("/")).read_bytes()
        wanted = self.headers.get("Range")
        self.ranges.append(wanted or "")
        if wanted:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2 if self.path.endswith(".iso") else len(data)])


def test_truncated_download_is_an_error_and_the_next_run_resumes_it(release: Release, tmp_path: Path) -> None:
    handler = type("Handler", (Truncating,), {"directory": release.directory, "ranges": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(AssetsError, match=rf"^{ISO}: download stopped at \d+ of \d+ bytes .*run again to resume"):
            ensure(release, url, tmp_path)
        assert nothing_served(tmp_path)
        size = (release.directory / ISO).stat().st_size
        published = ensure(release, url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.ranges[-1] == f"bytes={size // 2}-"
    assert published.downloaded_bytes == size - size // 2
    assert (tmp_path / "assets" / "amd64" / "live-server.iso").read_bytes() == (release.directory / ISO).read_bytes()


def test_tampered_iso_is_refused_deleted_and_not_served(release: Release, mirror: str, tmp_path: Path) -> None:
    iso = release.directory / ISO
    data = bytearray(iso.read_bytes())
    data[40000] ^= 0xFF
    iso.write_bytes(bytes(data))
    with pytest.raises(AssetsError, match=rf"^{ISO}: SHA-256 [0-9a-f]{{64}} is not the [0-9a-f]{{64}} that the signed"):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)
    assert list((tmp_path / "cache" / "iso").iterdir()) == []  # neither kept nor half-kept


def test_sums_changed_after_signing_are_refused(release: Release, mirror: str, tmp_path: Path) -> None:
    sums = release.directory / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{'0' * 64} *another.iso\n")
    with pytest.raises(AssetsError, match=r"^SHA256SUMS: signature SHA256SUMS.gpg does not verify: BAD signature"):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)


def test_sums_signed_by_another_key_are_refused(release: Release, mirror: str, tmp_path: Path) -> None:
    release.other.sign(release.directory / "SHA256SUMS", release.directory / "SHA256SUMS.gpg")
    with pytest.raises(
        AssetsError, match=rf"does not verify: signed by key \w+, not by the pinned key {release.trust.fingerprint}"
    ):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)


def test_a_keyring_holding_the_signer_is_not_enough_when_the_fingerprint_differs(
    release: Release, mirror: str, tmp_path: Path
) -> None:
    release.trust = Trust(release.trust.key_file, release.other.fingerprint)
    with pytest.raises(AssetsError, match=rf"signed by {release.signer.fingerprint}, not by the pinned key"):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)


def test_garbage_signature_is_refused(release: Release, mirror: str, tmp_path: Path) -> None:
    (release.directory / "SHA256SUMS.gpg").write_text("not a signature\n")
    with pytest.raises(AssetsError, match=r"^SHA256SUMS: signature SHA256SUMS.gpg does not verify: "):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)


def test_a_failed_run_keeps_the_release_served_before(release: Release, mirror: str, tmp_path: Path) -> None:
    first = ensure(release, mirror, tmp_path)
    newer = Source("amd64", "24.04.10", mirror, ISO)
    (release.directory / "SHA256SUMS.gpg").write_text("not a signature\n")
    with pytest.raises(AssetsError):
        assets.ensure(newer, release.trust, tmp_path / "cache", tmp_path / "assets", print, progress=None)
    served = json.loads((tmp_path / "assets" / "amd64" / "release.json").read_text())
    assert served["sha256"] == first.sha256


def test_missing_release_names_the_url_and_what_to_set(release: Release, mirror: str, tmp_path: Path) -> None:
    (release.directory / ISO).unlink()
    with pytest.raises(AssetsError, match=rf"{ISO}: HTTP 404 .*old-releases.ubuntu.com: set installer.<arch>.url"):
        ensure(release, mirror, tmp_path)


def test_a_point_release_moved_to_its_fallback_url_is_found_there(
    release: Release, mirror: str, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with Mirror(tmp_path / "empty") as moved_away:
        source = Source("amd64", "24.04.9", moved_away.url, ISO, fallback_url=mirror)
        lines: list[str] = []
        assets.ensure(source, release.trust, tmp_path / "cache", tmp_path / "assets", lines.append, progress=None)
    assert f"assets: downloading {mirror}{ISO}" in lines
    assert (tmp_path / "assets" / "amd64" / "live-server.iso").is_file()


def test_an_iso_without_casper_is_refused(release: Release, mirror: str, tmp_path: Path) -> None:
    (release.directory / ISO).write_bytes(b"\0" * 70000)
    release.signer.sign(write_sums(release.directory, [ISO]), release.directory / "SHA256SUMS.gpg")
    with pytest.raises(AssetsError, match=rf"^{ISO}: not a readable ISO 9660 image"):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)


def site(memory_mb: int | None) -> dict[str, object]:
    machine: dict[str, object] = {"name": "node1", "mac": "52:54:00:00:00:01", "ip": "10.0.0.11"}
    if memory_mb is not None:
        machine["memory_mb"] = memory_mb
    return {"lan": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"]},
            "ssh_keys": ["ssh-ed25519 AAAAC3Nza test"], "machines": [machine]}  # fmt: skip


def test_machine_with_too_little_ram_for_the_iso_in_ram_is_named() -> None:
    published = {"amd64": assets.Published("amd64", "24.04.3", ISO, "0" * 64, 3_100_000_000, 0)}
    assert published["amd64"].ram_needed_mb == 2957 + assets.LIVE_SYSTEM_MB
    with pytest.raises(AssetsError, match=r"^machines\[0\]\.memory_mb: node1 has 4096 MiB, but .* needs at least 4493"):
        assets.check_memory(parse_site(site(4096)), published)
    assets.check_memory(parse_site(site(8192)), published)
    assets.check_memory(parse_site(site(None)), published)  # unknown: not checked


def test_site_pins_ubuntu_24_04_per_architecture_by_default() -> None:
    parsed = parse_site(site(None))
    source = Source.from_site(parsed, "amd64")
    assert source.iso_name == f"ubuntu-{source.version}-live-server-amd64.iso"
    assert source.version.startswith("24.04.")
    assert source.base_url == f"https://releases.ubuntu.com/{source.version}/"
    assert source.fallback_url == f"https://old-releases.ubuntu.com/releases/{source.version}/"
    arm = Source.from_site(parsed, "arm64")
    assert arm.base_url == f"https://cdimage.ubuntu.com/releases/{arm.version}/release/"
    with pytest.raises(Exception, match=r"installer\.amd64\.version"):
        parse_site({**site(None), "installer": {"amd64": {"version": "24.10"}}})  # not an LTS


def test_shipped_key_is_ubuntus_cd_image_signing_key() -> None:
    shown = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", str(assets.UBUNTU_CD_KEY)],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"fpr:::::::::{assets.UBUNTU_CD_FINGERPRINT}:" in shown.splitlines()
    assert "Ubuntu CD Image Automatic Signing Key (2012) <cdimage@ubuntu.com>" in shown
    assert assets.Trust.ubuntu().fingerprint == "843938DF228D22F7B3742BC0D94AA3F0EFE21092"


def test_a_long_error_is_one_line_and_the_rest_goes_to_a_file(tmp_path: Path) -> None:
    from homelab_bootstrap.up import error_line

    assert error_line(AssetsError("x.iso: bad"), tmp_path) == "x.iso: bad"
    line = error_line(RuntimeError("qemu lab1 exited with 1; see the log\nlast output:\nboom"), tmp_path)
    assert line == f"qemu lab1 exited with 1; see the log (the whole message: {tmp_path / 'up-error.log'})"
    assert (tmp_path / "up-error.log").read_text().endswith("last output:\nboom\n")


def test_assets_command_trusts_only_ubuntus_key(release: Release, mirror: str, tmp_path: Path) -> None:
    """The real CLI, pointed at a mirror whose SUMS a throwaway key signed: refused in one line, nothing served."""
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps({**site(None), "installer": {"amd64": {"version": "24.04.9", "url": mirror}}}))
    state = tmp_path / "state"
    err = subprocess.run(  # in a child: main() prints, and the test wants exactly what a user sees
        [sys.executable, "-c", "import sys; from homelab_bootstrap.__main__ import main; sys.exit(main(sys.argv[1:]))",
         "assets", "--site", str(site_file), "--state", str(state)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert err.returncode == 1, err.stdout + err.stderr
    assert err.stderr == (
        f"assets: SHA256SUMS: signature SHA256SUMS.gpg does not verify: signed by key "
        f"{release.signer.fingerprint[-16:]}, not by the pinned key {assets.UBUNTU_CD_FINGERPRINT}\n"
    )
    assert not (state / "pxe-assets" / "amd64").exists()


def test_not_enough_disk_for_the_iso_is_said_before_downloading(
    release: Release, mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def nearly_full(path: str | Path) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(assets.shutil, "disk_usage", nearly_full)
    with pytest.raises(AssetsError, match=r"^SHA256SUMS: needs 0\.3 GB free in .*, there are 0\.0 GB: free some"):
        ensure(release, mirror, tmp_path)
    assert nothing_served(tmp_path)
