"""The lab's stand-in Ubuntu release, so the lab boots through the real installer assets stage.

The lab cannot download Ubuntu, so it publishes a release of its own with the same layout: an ISO 9660 image with
``casper/vmlinuz`` and ``casper/initrd`` (the lab installer's kernel and initrd, :mod:`.installer`), a
``SHA256SUMS`` and its detached signature ``SHA256SUMS.gpg`` made with a throwaway key generated for that build.
:class:`Mirror` serves the release directory on loopback with byte ranges, like Ubuntu's mirrors, and
:func:`prepare_assets` runs :func:`homelab_bootstrap.assets.ensure` against it, trusting exactly that key.
Only the key and the URL differ from a real run: download, signature, checksum, extraction and layout are the
production code.

Built once per installer build (cached beside it); a few seconds (gpg key generation and the ISO image).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

import pycdlib

from homelab_bootstrap.assets import Published, Source, Trust, ensure
from homelab_bootstrap.lab.commands import LabError, require_tool, run
from homelab_bootstrap.lab.installer import Installer, build_installer

ISO_NAME = "ubuntu-lab-live-server-amd64.iso"


def build_iso(kernel: Path, initrd: Path, out: Path) -> None:
    """An ISO 9660 image (Rock Ridge + Joliet, like Ubuntu's) with ``casper/vmlinuz`` and ``casper/initrd``."""
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident="UBUNTU_LAB")
    image.add_directory("/CASPER", rr_name="casper", joliet_path="/casper")
    image.add_file(str(kernel), "/CASPER/VMLINUZ.;1", rr_name="vmlinuz", joliet_path="/casper/vmlinuz")
    image.add_file(str(initrd), "/CASPER/INITRD.;1", rr_name="initrd", joliet_path="/casper/initrd")
    image.write(str(out))
    image.close()


class SigningKey:
    """A throwaway OpenPGP signing key in its own GnuPG home (gpg generates it; nothing touches ~/.gnupg)."""

    def __init__(self, name: str = "homelab lab release <lab@homelab.invalid>") -> None:
        self.gpg = require_tool("gpg", "gnupg")
        self.home = Path(tempfile.mkdtemp(prefix="hl-gpg-"))  # short: gpg-agent's socket lives here
        os.chmod(self.home, 0o700)
        self._gpg("--quick-generate-key", name, "ed25519", "sign", "never")
        listing = self._gpg("--with-colons", "--list-keys")
        match = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)
        if match is None:
            raise LabError(f"gpg made no key in {self.home}")
        self.fingerprint = match[1]

    def _gpg(self, *args: str) -> str:
        return run([self.gpg, "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "", *args], hint="is gnupg installed?")  # fmt: skip

    def export(self, target: Path) -> Path:
        target.write_text(self._gpg("--armor", "--export", self.fingerprint), encoding="ascii")
        return target

    def sign(self, data: Path, signature: Path) -> Path:
        """A detached, ASCII-armored signature (what Ubuntu publishes as SHA256SUMS.gpg)."""
        signature.unlink(missing_ok=True)
        self._gpg("--local-user", self.fingerprint, "--armor", "--detach-sign", "--output", str(signature), str(data))
        return signature

    def close(self) -> None:
        """Stop the gpg-agent gpg started for this home, then delete it."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=False,
                       capture_output=True, timeout=30)  # fmt: skip
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_sums(directory: Path, names: list[str]) -> Path:
    """``SHA256SUMS`` in Ubuntu's format (``<hex> *<name>``) for files of ``directory``."""
    lines = []
    for name in names:
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        lines.append(f"{digest} *{name}\n")
    sums = directory / "SHA256SUMS"
    sums.write_text("".join(lines), encoding="ascii")
    return sums


@dataclass(frozen=True)
class LabRelease:
    """A release directory (ISO, SHA256SUMS, SHA256SUMS.gpg) and the key that signed it."""

    directory: Path
    trust: Trust
    version: str

    def source(self, base_url: str) -> Source:
        return Source("amd64", self.version, base_url, ISO_NAME)


def build_release(installer: Installer, cache_dir: Path) -> LabRelease:
    """The release for this installer build: from the cache, else built now (atomically)."""
    key = installer.kernel.parent.name.removeprefix("installer-")
    out = cache_dir / f"release-{key}"
    if not (out / "SHA256SUMS.gpg").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".release-", dir=cache_dir))
        try:
            build_iso(installer.kernel, installer.initrd, staging / ISO_NAME)
            sums = write_sums(staging, [ISO_NAME])
            with SigningKey() as signer:
                signer.sign(sums, staging / "SHA256SUMS.gpg")
                signer.export(staging / "signing-key.asc")
                (staging / "fingerprint").write_text(signer.fingerprint + "\n", encoding="ascii")
            shutil.rmtree(out, ignore_errors=True)
            staging.replace(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    fingerprint = (out / "fingerprint").read_text(encoding="ascii").strip()
    return LabRelease(out, Trust(out / "signing-key.asc", fingerprint), f"lab-{key}")


class Mirror:
    """A directory served over HTTP on loopback, with single byte ranges (``Range: bytes=a-[b]``) as mirrors do."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        root = directory.resolve()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = root / unquote(urlsplit(self.path).path).lstrip("/")
                if path.parent != root or not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                start, end, status = 0, size - 1, 200
                wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if wanted:
                    start, end, status = int(wanted[1]), min(int(wanted[2] or size - 1), size - 1), 206
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(status)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                with path.open("rb") as handle:
                    handle.seek(start)
                    left = end - start + 1
                    while left > 0 and (chunk := handle.read(min(left, 1 << 20))):
                        self.wfile.write(chunk)
                        left -= len(chunk)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="lab-mirror", daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def prepare_assets(cache_dir: Path, assets_dir: Path, say: Callable[[str], None] = print) -> Published:
    """The lab's installer assets, through the real stage: build (or reuse) the release, serve it, ensure."""
    release = build_release(build_installer(cache_dir), cache_dir)
    with Mirror(release.directory) as mirror:
        return ensure(release.source(mirror.url), release.trust, cache_dir / "assets", assets_dir, say, progress=None)
