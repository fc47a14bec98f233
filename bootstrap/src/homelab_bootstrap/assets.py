"""The installer assets stage: Ubuntu's live-server ISO, verified, and its kernel and initrd, laid out for pxe.

For each architecture the site's machines have (``site.installer.<arch>``):

1. ``SHA256SUMS`` and ``SHA256SUMS.gpg`` from the release directory; the signature must be a good one by the pinned
   key (:data:`UBUNTU_CD_FINGERPRINT`, "Ubuntu CD Image Automatic Signing Key (2012)", shipped in ``keys/``),
   checked with ``gpgv`` against that key alone — never the user's keyring.
2. The ISO, with a progress bar, resumable (``Range``): a ``.part`` file survives an interrupted run.
   Its SHA-256 must equal the signed line for it; a mismatch deletes the download.
3. ``casper/vmlinuz`` and ``casper/initrd`` read out of the ISO with pycdlib: pure Python, no mount (no root, no
   loop devices) and no extra Debian package (xorriso or 7z would be one more tool on the controller).
4. ``<assets>/<arch>/{vmlinuz,initrd,live-server.iso}`` (+ ``release.json``) replaced in one rename, only after
   everything verified: a failed run serves nothing new (and never a half-written file).

The cache is keyed by checksum (``<cache>/iso/<sha256>.iso``, ``<cache>/extracted/<sha256>/``), so a rerun
downloads nothing: the signed sums are kept per release and re-verified locally on every run.

The install then runs from the ISO held in RAM (casper's ``url=``): :func:`check_memory` compares each machine's
``memory_mb`` (when the site gives it) with the ISO's size plus :data:`LIVE_SYSTEM_MB`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from homelab_common.site import INITRD_ASSET, ISO_ASSET, KERNEL_ASSET, Site

#: "Ubuntu CD Image Automatic Signing Key (2012) <cdimage@ubuntu.com>": signs SHA256SUMS of every Ubuntu release.
UBUNTU_CD_FINGERPRINT = "843938DF228D22F7B3742BC0D94AA3F0EFE21092"
#: Its public key, exported from Debian's ubuntu-keyring package (see keys/README.md for where it came from).
UBUNTU_CD_KEY = Path(__file__).parent / "keys" / "ubuntu-cdimage-2012.asc"
#: RAM the live installer needs besides the ISO it holds in RAM (a tmpfs copy): the kernel, the live system's
#: squashfs layers mounted from that copy, subiquity and curtin. Ubuntu asks 4 GiB for a 24.04 install from the
#: ISO in RAM (ISO ~3 GiB); this margin keeps a machine that passes the check from running out during install.
LIVE_SYSTEM_MB = 1536
CHUNK = 1 << 20
#: Disk left free after a download (the extracted kernel and initrd, logs, the rest of the state directory).
SPARE_DISK = 256 << 20


class AssetsError(RuntimeError):
    """The installer could not be put in place; the message names the file and the reason."""


class NotPublished(AssetsError):
    """The server answered 404 for the file."""


@dataclass(frozen=True)
class Trust:
    """The one key a release's SHA256SUMS must be signed by: its public key file (armored or binary)."""

    key_file: Path
    fingerprint: str

    @classmethod
    def ubuntu(cls) -> Trust:
        return cls(UBUNTU_CD_KEY, UBUNTU_CD_FINGERPRINT)


@dataclass(frozen=True)
class Source:
    """Where one architecture's release is: ``<base_url>SHA256SUMS``, ``...SHA256SUMS.gpg``, ``...<iso_name>``."""

    arch: str
    version: str
    base_url: str
    iso_name: str
    #: Tried when ``base_url`` has no SHA256SUMS (404): a superseded point release's new home.
    fallback_url: str | None = None

    @classmethod
    def from_site(cls, site: Site, arch: str) -> Source:
        release = site.installer.release(arch)
        return cls(arch, release.version, release.base_url(arch), release.iso_name(arch), release.fallback_url(arch))


@dataclass(frozen=True)
class Published:
    """What ``<assets>/<arch>/`` holds (also its ``release.json``)."""

    arch: str
    version: str
    iso_name: str
    sha256: str
    iso_bytes: int
    downloaded_bytes: int

    @property
    def ram_needed_mb(self) -> int:
        return math.ceil(self.iso_bytes / 2**20) + LIVE_SYSTEM_MB


# ------------------------------------------------------------------------------------------------ signatures


def dearmor(text: str) -> bytes:
    """The binary packets of an ASCII-armored OpenPGP block (gpgv reads binary keyrings only)."""
    match = re.search(r"-----BEGIN PGP [A-Z ]+-----\r?\n(?:[^\n]*:[^\n]*\n)*\r?\n(.*?)-----END PGP", text, re.DOTALL)
    if match is None:
        raise ValueError("no ASCII-armored OpenPGP block")
    body = "".join(line for line in match[1].split() if not line.startswith("="))  # "=XXXX" is the CRC-24
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in the armored block ({exc})") from None


def verify_signature(data: Path, signature: Path, trust: Trust) -> None:
    """A good signature over ``data`` by ``trust``'s key (primary fingerprint pinned), else AssetsError."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise AssetsError("gpgv not found: install the Debian package gpgv (it verifies Ubuntu's signed SHA256SUMS)")
    raw = trust.key_file.read_bytes()
    try:
        keyring_bytes = dearmor(raw.decode("ascii")) if raw.lstrip().startswith(b"-----BEGIN") else raw
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssetsError(f"{trust.key_file}: not an OpenPGP public key ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="homelab-gpgv-") as tmp:
        keyring = Path(tmp) / "trusted.gpg"
        keyring.write_bytes(keyring_bytes)
        done = subprocess.run(
            [gpgv, "--homedir", tmp, "--status-fd", "1", "--keyring", str(keyring), str(signature), str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    status = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("[GNUPG:] ")]
    valid = [fields for fields in status if fields[0] == "VALIDSIG"]
    if done.returncode == 0 and any(fields[-1].upper() == trust.fingerprint.upper() for fields in valid):
        return
    kinds = {fields[0]: fields for fields in status}
    if "BADSIG" in kinds:
        reason = "BAD signature: the file was changed after it was signed"
    elif "NO_PUBKEY" in kinds or "ERRSIG" in kinds:
        key = (kinds.get("NO_PUBKEY") or kinds["ERRSIG"])[1]
        reason = f"signed by key {key}, not by the pinned key {trust.fingerprint}"
    elif "EXPKEYSIG" in kinds or "REVKEYSIG" in kinds:
        reason = f"signed by an expired or revoked key ({' '.join(kinds.get('EXPKEYSIG') or kinds['REVKEYSIG'])})"
    elif "NODATA" in kinds:
        reason = "not an OpenPGP signature"
    elif valid:
        reason = f"signed by {valid[0][-1]}, not by the pinned key {trust.fingerprint}"
    else:
        reason = (done.stderr.strip().splitlines() or ["gpgv failed"])[-1]
    raise AssetsError(f"{data.name}: signature {signature.name} does not verify: {reason}")


def expected_sha256(sums: Path, iso_name: str) -> str:
    """The checksum ``SHA256SUMS`` gives for ``iso_name`` (``<hex> *<name>`` lines)."""
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]([^\s]+)", line.strip())
        if match and match[2] == iso_name:
            return match[1].lower()
    raise AssetsError(f"{sums.name}: no line for {iso_name} (wrong version or architecture in site.yaml installer?)")


# ------------------------------------------------------------------------------------------------- downloads


class ProgressBar:
    """One updating line on a terminal (``\\r``); elsewhere a line per 10 %."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.first: int | None = None
        self.last_tenth = -1
        self.last_draw = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if self.first is None:
            self.first = done
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (done - self.first) / elapsed
        if total:
            left = (total - done) / rate if rate > 0 else 0.0
            line = (f"  {self.name}  {done / 1e6:,.0f}/{total / 1e6:,.0f} MB  {100 * done / total:5.1f}%  "
                    f"{rate / 1e6:6.1f} MB/s  {left:4.0f}s left")  # fmt: skip
            tenth = 10 * done // total
        else:
            line, tenth = f"  {self.name}  {done / 1e6:,.0f} MB  {rate / 1e6:6.1f} MB/s", -1
        now = time.monotonic()
        if self.tty and (now - self.last_draw > 0.2 or done == total):
            self.stream.write("\r" + line.ljust(78) + ("\n" if done == total else ""))
            self.stream.flush()
            self.last_draw = now
        elif not self.tty and tenth != self.last_tenth:
            self.stream.write(line + "\n")
            self.last_tenth = tenth


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """The response for ``url`` from byte ``offset``; None when the server says there is nothing past it (416)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})  # noqa: S310
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None
        hint = ""
        if exc.code == 404:
            hint = " (superseded point releases move to old-releases.ubuntu.com: set installer.<arch>.url)"
        raise (NotPublished if exc.code == 404 else AssetsError)(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AssetsError(f"{url}: cannot download ({reason}): check the controller's internet access") from None
    return response


def download(url: str, part: Path, progress: Callable[[int, int | None], None] | None, timeout: float = 30.0) -> int:
    """Fetch ``url`` into ``part``, continuing where an earlier run stopped; the number of bytes fetched now.

    A connection that ends early raises AssetsError and keeps ``part``: the next run resumes it.
    """
    name = url.rsplit("/", 1)[-1]
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    if response is None:
        return 0  # complete already (the checksum decides whether it is right)
    with response:
        resumed = offset > 0 and response.status == 206
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None and length.isdigit() else None
        free = shutil.disk_usage(part.parent).free
        if total is not None and total - start + SPARE_DISK > free:
            raise AssetsError(
                f"{name}: needs {(total - start + SPARE_DISK) / 1e9:.1f} GB free in {part.parent}, there are "
                f"{free / 1e9:.1f} GB: free some space there, or pass --state on a larger disk"
            )
        received = 0
        try:
            with part.open("ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if progress:
                        progress(start + received, total)
        except (OSError, http.client.HTTPException) as exc:
            raise AssetsError(
                f"{name}: download interrupted at {(start + received) / 1e6:.1f} MB ({exc}): run again to resume"
            ) from None
    if total is not None and start + received < total:
        raise AssetsError(
            f"{name}: download stopped at {start + received} of {total} bytes "
            "(the connection closed early): run again to resume"
        )
    return received


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ extraction


def extract_casper(iso: Path, target: Path, label: str) -> None:
    """``casper/vmlinuz`` and ``casper/initrd`` of the live-server ISO into ``target`` (Rock Ridge or Joliet names,
    else plain ISO 9660)."""
    image = pycdlib.PyCdlib()
    try:
        image.open(str(iso))
    except (PyCdlibException, OSError) as exc:
        raise AssetsError(f"{label}: not a readable ISO 9660 image ({exc})") from None
    try:
        for member, name in (("casper/vmlinuz", KERNEL_ASSET), ("casper/initrd", INITRD_ASSET)):
            if image.has_rock_ridge():
                where = {"rr_path": f"/{member}"}
            elif image.has_joliet():
                where = {"joliet_path": f"/{member}"}
            else:
                where = {"iso_path": f"/{member.upper()};1"}
            try:
                with (target / name).open("wb") as out:
                    image.get_file_from_iso_fp(out, **where)
            except PyCdlibException:
                raise AssetsError(f"{label}: no {member} in it (not an Ubuntu live-server image?)") from None
    finally:
        image.close()


# ---------------------------------------------------------------------------------------------------- stage


def _fetch_sums(source: Source, trust: Trust, directory: Path) -> tuple[Path, int, str]:
    """The release's SHA256SUMS, verified, and the base URL it came from; downloaded only when not kept from an
    earlier run (``base_url`` is remembered beside it)."""
    sums, signature, origin = directory / "SHA256SUMS", directory / "SHA256SUMS.gpg", directory / "url"
    fetched = 0
    if not (sums.is_file() and signature.is_file() and origin.is_file()):
        directory.mkdir(parents=True, exist_ok=True)
        bases = [source.base_url, *([source.fallback_url] if source.fallback_url else [])]
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            for base in bases:
                try:
                    fetched += download(base + "SHA256SUMS", Path(tmp) / "SHA256SUMS", None)
                    break
                except NotPublished:
                    if base == bases[-1]:
                        raise
            fetched += download(base + "SHA256SUMS.gpg", Path(tmp) / "SHA256SUMS.gpg", None)
            verify_signature(Path(tmp) / "SHA256SUMS", Path(tmp) / "SHA256SUMS.gpg", trust)
            (Path(tmp) / "url").write_text(base + "\n", encoding="utf-8")
            for name in ("SHA256SUMS", "SHA256SUMS.gpg", "url"):
                (Path(tmp) / name).replace(directory / name)
        return sums, fetched, base
    try:
        verify_signature(sums, signature, trust)
    except AssetsError:
        sums.unlink()
        signature.unlink()  # the next run fetches them again
        raise
    return sums, fetched, origin.read_text(encoding="utf-8").strip()


def _published(arch_dir: Path) -> Published | None:
    try:
        record = Published(**json.loads((arch_dir / "release.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if all((arch_dir / name).is_file() for name in (KERNEL_ASSET, INITRD_ASSET, ISO_ASSET)):
        return record
    return None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def ensure(
    source: Source,
    trust: Trust,
    cache: Path,
    assets: Path,
    say: Callable[[str], None] = print,
    progress: Callable[[str], Callable[[int, int | None], None]] | None = ProgressBar,
) -> Published:
    """Put ``source``'s installer into ``<assets>/<arch>/``, verified; see the module docstring."""
    cache, assets = cache.resolve(), assets.resolve()
    sums, fetched, base = _fetch_sums(source, trust, cache / "releases" / source.arch / source.version)
    sha = expected_sha256(sums, source.iso_name)
    iso = cache / "iso" / f"{sha}.iso"
    if not iso.is_file():
        iso.parent.mkdir(parents=True, exist_ok=True)
        part = iso.with_suffix(".iso.part")
        say(f"assets: downloading {base}{source.iso_name}" + (" (resuming)" if part.exists() else ""))
        fetched += download(base + source.iso_name, part, progress(source.iso_name) if progress else None)
        actual = _sha256(part)
        if actual != sha:
            part.unlink()
            raise AssetsError(
                f"{source.iso_name}: SHA-256 {actual} is not the {sha} that the signed SHA256SUMS gives: corrupted "
                "or tampered with; the download was deleted, run again"
            )
        part.replace(iso)
    extracted = cache / "extracted" / sha
    if not extracted.is_dir():
        extracted.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=extracted.parent))
        try:
            extract_casper(iso, staging, source.iso_name)
            staging.replace(extracted)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    record = Published(source.arch, source.version, source.iso_name, sha, iso.stat().st_size, fetched)
    arch_dir = assets / source.arch
    current = _published(arch_dir)
    if current is None or current.sha256 != sha:
        assets.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{source.arch}-", dir=assets))
        try:
            _link_or_copy(extracted / KERNEL_ASSET, staging / KERNEL_ASSET)
            _link_or_copy(extracted / INITRD_ASSET, staging / INITRD_ASSET)
            _link_or_copy(iso, staging / ISO_ASSET)
            (staging / "release.json").write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
            staging.chmod(0o755)
            if arch_dir.exists():
                old = arch_dir.with_name(f".{source.arch}-old")
                shutil.rmtree(old, ignore_errors=True)
                arch_dir.replace(old)
                staging.replace(arch_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                staging.replace(arch_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    what = f"downloaded {fetched / 1e6:.1f} MB" if fetched else "nothing downloaded (cached)"
    say(f"assets: {source.arch} Ubuntu {source.version} verified ({source.iso_name}, sha256 {sha[:12]}…), {what}")
    return record


def check_memory(site: Site, published: dict[str, Published]) -> None:
    """Every machine whose ``memory_mb`` the site gives holds its installer ISO in RAM with room to install."""
    problems = []
    for index, machine in enumerate(site.machines):
        release = published.get(machine.arch)
        if machine.memory_mb is None or release is None or machine.memory_mb >= release.ram_needed_mb:
            continue
        problems.append(
            f"machines[{index}].memory_mb: {machine.name} has {machine.memory_mb} MiB, but installing Ubuntu "
            f"{release.version} from the ISO in RAM needs at least {release.ram_needed_mb} MiB "
            f"(ISO {math.ceil(release.iso_bytes / 2**20)} MiB + {LIVE_SYSTEM_MB} MiB for the live system)"
        )
    if problems:
        raise AssetsError("; ".join(problems))


def run(site: Site, cache: Path, assets: Path, say: Callable[[str], None] = print) -> dict[str, Published]:
    """The stage: Ubuntu's release for every architecture the site's machines have, then the RAM check."""
    trust = Trust.ubuntu()
    published = {arch: ensure(Source.from_site(site, arch), trust, cache, assets, say) for arch in site.architectures}
    check_memory(site, published)
    return published
