"""Slim what a service image holds; standard library only, run by the target's own python3 (3.11).

``python3 slim.py base`` runs inside a runtime base's root filesystem (mmdebstrap customize hook, chroot).
A service image runs one Python program; it installs nothing at run time (no apt, no maintainer scripts), so:

- the Essential packages a container never uses are removed file by file with their dpkg records (``DROP``:
  perl, PAM and login, util-linux and the libraries only they need, debconf, the openssl binary): no maintainer
  script runs, and ``/var/lib/dpkg/status`` keeps listing exactly what is installed, for image scanners;
- the standard library becomes bytecode only (``name.pyc`` beside where ``name.py`` was, compiled at the default
  optimization level, so docstrings and asserts stay): about 10 MB less; tracebacks still name file and line;
- the parts of the standard library no service imports go (``STDLIB_DROP``: python3.11's postinst still needs
  them, so they are removed here, not left unpacked); glibc's iconv modules are a dpkg ``path-exclude`` of the
  base recipe (homelab_bootstrap.images).

``python3 slim.py venv VENV`` runs in the Dockerfile's build stage on the virtualenv it copies into the image:

- the kubernetes client's asyncio copy (``kubernetes/aio``) goes: nothing of ours imports it;
- tests, type stubs and C/Cython sources of third-party packages go;
- third-party modules become bytecode only, as above (our ``homelab_*`` packages keep their sources);
- the kubernetes client (a thousand generated modules, 57 MB as source + bytecode) is bytecode in one
  zip archive (``_kubernetes.zip`` on sys.path through ``_kubernetes.pth``; zipimport, as for Python's own
  zipped standard library), about 6 MB. Its docstrings stay: ``kubernetes.watch`` reads the ``:rtype:`` lines.

Prints what it removed.
"""

from __future__ import annotations

import compileall
import os
import shutil
import sys
import zipfile
from pathlib import Path

DROP = (
    "perl-base",
    "debconf",
    "login",
    "libpam-modules",
    "libpam-modules-bin",
    "libpam-runtime",
    "libpam0g",
    "libdb5.3",
    "util-linux",
    "util-linux-extra",
    "bsdutils",
    "libmount1",
    "libblkid1",
    "libsmartcols1",
    "libsystemd0",
    "libudev1",
    "libgcrypt20",
    "libgpg-error0",
    "liblz4-1",
    "libaudit1",
    "libaudit-common",
    "libcap-ng0",
    "libcap2",
    "ncurses-bin",
    "diffutils",
    "sysvinit-utils",
    "openssl",
)
STDLIB_DROP = ("ensurepip", "idlelib", "lib2to3", "pydoc_data", "tkinter", "turtledemo", "test", "venv")
STATUS = Path("/var/lib/dpkg/status")
INFO = Path("/var/lib/dpkg/info")


def _stanzas(text: str) -> list[str]:
    return [s for s in text.split("\n\n") if s.strip()]


def _field(stanza: str, name: str) -> str:
    for line in stanza.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _files(package: str) -> set[str]:
    for name in (f"{package}.list", f"{package}:amd64.list", f"{package}:arm64.list"):
        if (INFO / name).is_file():
            return set((INFO / name).read_text(encoding="utf-8").splitlines())
    return set()


def drop_packages(drop: tuple[str, ...] = DROP) -> list[str]:
    """Remove the installed packages of ``drop``: their files (not the ones another package owns, never a
    directory) and their dpkg records."""
    stanzas = _stanzas(STATUS.read_text(encoding="utf-8"))
    installed = {_field(s, "Package") for s in stanzas}
    gone = [p for p in drop if p in installed]
    kept_files: set[str] = set()
    for package in installed - set(gone):
        kept_files |= _files(package)
    for package in gone:
        for name in sorted(_files(package) - kept_files, reverse=True):
            path = Path(name)
            if path.is_dir():  # follows symlinks: /bin, /lib (merged /usr) stay
                continue
            if path.is_symlink() or path.exists():
                path.unlink()
        for info in INFO.glob(f"{package}[.:]*"):
            info.unlink()
    keep = [s for s in stanzas if _field(s, "Package") not in gone]
    STATUS.write_text("\n\n".join(s.strip("\n") for s in keep) + "\n", encoding="utf-8")
    return gone


def bytecode_only(stdlib: Path) -> int:
    """Compile ``stdlib`` to legacy ``name.pyc`` files beside the sources, then remove sources and caches."""
    if not compileall.compile_dir(str(stdlib), quiet=1, legacy=True, force=True, workers=1):
        raise SystemExit(f"compiling {stdlib} failed")
    removed = 0
    for dirpath, dirnames, filenames in os.walk(stdlib):
        if "__pycache__" in dirnames:
            shutil.rmtree(Path(dirpath) / "__pycache__")
            dirnames.remove("__pycache__")
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".py") and path.with_suffix(".pyc").is_file():
                path.unlink()
                removed += 1
    return removed


def base() -> None:
    gone = drop_packages()
    print(f"slim: removed {len(gone)} packages: {' '.join(gone)}")
    stdlib = Path(os.__file__).parent
    for name in STDLIB_DROP:
        shutil.rmtree(stdlib / name, ignore_errors=True)
    print(f"slim: {bytecode_only(stdlib)} standard library modules now bytecode only")


OURS = "homelab_"
JUNK_DIRS = {"tests", "test"}
JUNK_SUFFIXES = {".pyi", ".c", ".h", ".cpp", ".pyx", ".pxd"}
ZIPPED = "kubernetes"


def venv(path: Path) -> None:
    (site,) = path.glob("lib/python3*/site-packages")
    shutil.rmtree(site / ZIPPED / "aio", ignore_errors=True)
    theirs = [p for p in site.iterdir() if not p.name.startswith(OURS) and not p.name.endswith(".dist-info")]
    junk = 0
    for top in theirs:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [d for d in dirnames if d in JUNK_DIRS]:
                shutil.rmtree(Path(dirpath) / name)
                dirnames.remove(name)
                junk += 1
            for name in filenames:
                if Path(name).suffix in JUNK_SUFFIXES or name.endswith("_test.py"):
                    (Path(dirpath) / name).unlink()
                    junk += 1
    print(f"slim: removed {junk} test folders, stubs and C sources")
    modules = 0
    for top in theirs:
        if top.is_dir():
            modules += bytecode_only(top)
        elif top.suffix == ".py":  # a one-file module (six.py, typing_extensions.py)
            if not compileall.compile_file(str(top), quiet=1, legacy=True, force=True):
                raise SystemExit(f"compiling {top} failed")
            top.unlink()
            modules += 1
    print(f"slim: {modules} third-party modules now bytecode only")
    package = site / ZIPPED
    if package.is_dir():
        archive = site / f"_{ZIPPED}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for file in sorted(package.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(site).as_posix())
        shutil.rmtree(package)
        (site / f"_{ZIPPED}.pth").write_text(f"_{ZIPPED}.zip\n", encoding="utf-8")
        print(f"slim: {ZIPPED} zipped, {archive.stat().st_size / 1e6:.1f} MB")


def main(argv: list[str]) -> int:
    if argv[:1] == ["base"] and len(argv) == 1:
        base()
    elif argv[:1] == ["venv"] and len(argv) == 2:
        venv(Path(argv[1]))
    else:
        print("usage: slim.py base | slim.py venv VENV", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
