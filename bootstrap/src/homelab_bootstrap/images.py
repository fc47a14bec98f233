"""`task images`: every service image and the bootstrap image, built here with buildah, no registry needed.

The images are built from ``services/Dockerfile`` with ``buildah bud --isolation chroot`` (daemonless). Its ``BASE``
and ``BUILD_BASE`` are Debian images the project makes itself with mmdebstrap (Python, CA certificates, tzdata,
plus what one service needs: the ``debs`` of ``[tool.homelab.image]`` in its pyproject.toml), so nothing is pulled.

Which images: every workspace member (``services/*``, ``bootstrap``) with a ``src/`` folder and a console script
``homelab-<folder name>``; adding a service adds its image. ``[tool.homelab.image]`` may add ``debs`` (Debian
packages), ``target`` (a Dockerfile stage) and ``context`` (more paths the image copies, which its tag covers).

Tags are derived from the inputs, so an unchanged tree rebuilds nothing: a base's tag from its package list and
recipe; an image's from its bases, the Dockerfile, uv.lock and the files of the workspace members it installs
(tests and caches excluded, as in .dockerignore). Output: OCI archives under ``.cache/homelab/images/`` and
``index.json`` (name, tag, reference, archive, its sha256, manifest digest, size). ``--pin`` writes the tags into
the charts' values (``charts/<name>/values.yaml``), which is how a rebuilt image reaches the cluster: the tag in
git changes and Argo CD rolls it out.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab_bootstrap import slim as slimming

REGISTRY = "homelab.internal"  # never resolved: Day 0 imports the archives, Day 2 mirrors it (registries.yaml)
PREFIX = f"{REGISTRY}/homelab"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_DEBS = ("python3", "ca-certificates", "tzdata")
# The one build base (BUILD_BASE) of every image: the build stage installs uv with `python3 -m venv`. Its Python
# is the runtime bases' (same suite, same package), so the venv it makes runs on any of them.
BUILD_DEBS = (*BASE_DEBS, "python3-venv")
# Documentation, manuals and translations are left out of every base (dpkg's path-exclude).
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*", "/usr/share/lintian/*")
# A runtime base of a Python service (no debs of its own) is slimmed further: glibc's iconv charset modules are
# never unpacked (Python has its own codecs), and slim.py (run inside it) drops the Essential packages a
# container never uses, the standard library's unused parts, and makes the rest bytecode only. The build base
# keeps everything (venv, ensurepip); a base with debs (bootstrap: git, ssh) keeps what its packages need.
SLIM_EXCLUDES = ("/usr/lib/*/gconv/*",)
SLIM_SCRIPT = Path(slimming.__file__)
SLIM_SOURCE = "bootstrap/src/homelab_bootstrap/slim.py"  # in the checkout: the Dockerfile's build stage runs it
RECIPE_VERSION = "1"  # bump when the base recipe below changes in a way its inputs do not show
SIZE_GOAL_MB = 120.0
HELM_LINK = Path(".cache/bin/helm")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SKIP_PARTS = {"tests", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
Log = Callable[[str], None]


class ImageError(RuntimeError):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Image:
    name: str  # the workspace member's folder name; the image is PREFIX/name
    member: Path  # its folder, relative to the repository root
    target: str  # the Dockerfile stage
    debs: tuple[str, ...]  # Debian packages beyond BASE_DEBS
    context: tuple[str, ...]  # more paths the image copies (their files are part of the tag)
    members: tuple[Path, ...]  # the workspace members it installs (itself and its workspace dependencies)


def _pyproject(path: Path) -> dict[str, Any]:
    return tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))


def discover(root: Path) -> list[Image]:
    """Every workspace member with a src/ folder and a ``homelab-<folder>`` console script, sorted by name."""
    members = {
        p.parent for pattern in ("services/*/pyproject.toml", "bootstrap/pyproject.toml") for p in root.glob(pattern)
    }
    by_package = {_pyproject(m)["project"]["name"]: m for m in members}
    images = []
    for member in sorted(members):
        data = _pyproject(member)
        name = member.name
        if not (member / "src").is_dir() or f"homelab-{name}" not in data["project"].get("scripts", {}):
            continue
        conf = data.get("tool", {}).get("homelab", {}).get("image", {})
        deps: set[Path] = {member}
        queue = [member]
        while queue:  # the workspace members it depends on, transitively
            sources = _pyproject(queue.pop()).get("tool", {}).get("uv", {}).get("sources", {})
            for package, spec in sources.items():
                if spec.get("workspace") and by_package[package] not in deps:
                    deps.add(by_package[package])
                    queue.append(by_package[package])
        images.append(
            Image(
                name=name,
                member=member.relative_to(root),
                target=conf.get("target", "service"),
                debs=tuple(sorted(conf.get("debs", []))),
                context=tuple(conf.get("context", [])),
                members=tuple(sorted(d.relative_to(root) for d in deps)),
            )
        )
    return images


def _files(root: Path, paths: Iterable[str]) -> list[str]:
    """The files under ``paths`` git would see (tracked or not ignored), minus tests and caches; sorted."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = {f for f in out.split("\0") if f and not SKIP_PARTS.intersection(Path(f).parts)}
    return sorted(f for f in files if (root / f).is_file())


# A pinned tag in a chart's values (see pin): left out of digests, or pinning the bootstrap image (which copies
# charts/) would change its own tag.
PIN = re.compile(rf"^(\s*repository: {re.escape(PREFIX)}/\S+\n\s*)tag: .*$", re.MULTILINE)
# A pinned reference written out in full (e.g. the backup controller's HOMELAB_BACKUP_IMAGE for its Jobs)
PIN_REF = re.compile(rf"({re.escape(PREFIX)}/[a-z0-9-]+):[A-Za-z0-9._-]+")


def _digest(root: Path, files: Iterable[str], extra: Iterable[str] = ()) -> str:
    h = hashlib.sha256()
    for item in extra:
        h.update(item.encode() + b"\0")
    for name in files:
        data = (root / name).read_bytes()
        if name.startswith("charts/") and name.endswith("values.yaml"):
            data = PIN_REF.sub(r"\1:pinned", PIN.sub(r"\1tag: pinned", data.decode())).encode()
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def slim(debs: Iterable[str]) -> bool:
    """Whether the base of ``debs`` is a slimmed runtime base: exactly a Python service's (BASE_DEBS)."""
    return set(debs) == set(BASE_DEBS)


def base_tag(debs: Iterable[str]) -> str:
    recipe: dict[str, Any] = {"suite": SUITE, "debs": sorted(set(debs)), "excludes": EXCLUDES, "recipe": RECIPE_VERSION}
    if slim(debs):
        recipe["slim"] = [SLIM_EXCLUDES, hashlib.sha256(SLIM_SCRIPT.read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def image_tag(root: Path, image: Image, helm_sha: str) -> str:
    """The tag of ``image``: a digest of everything its build reads."""
    common = ["services/Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md", SLIM_SOURCE]
    paths = [*common, *(str(m) for m in image.members), *image.context]
    # every member's pyproject.toml: uv resolves the whole workspace even to install one member
    paths += [str(p.relative_to(root)) for p in sorted(root.glob("services/*/pyproject.toml"))]
    extra = [base_tag(BASE_DEBS + image.debs), base_tag(BUILD_DEBS), image.target]
    if image.target == "bootstrap":
        extra.append(helm_sha)
    elif image.target in TOOL_OF_TARGET:
        extra.append(_tool(root, TOOL_OF_TARGET[image.target])[1])
    return _digest(root, sorted(set(_files(root, paths))), extra)


def _run(cmd: list[str], what: str, **kwargs: Any) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ImageError(f"{what} failed ({' '.join(cmd[:3])} ... exit {proc.returncode}):\n{tail}")
    return str(proc.stdout)


def exists(ref: str) -> bool:
    return (
        subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True, check=False).returncode == 0
    )


def _archive(cache: Path, ref: str) -> Path:
    name, tag = ref.rsplit("/", 1)[1].split(":")
    return cache / f"{name}-{tag}.tar"


def _save(ref: str, cache: Path) -> Path:
    """``ref`` as an OCI archive in ``cache`` (its ref.name annotation is the full reference, for containerd)."""
    archive = _archive(cache, ref)
    if not archive.is_file():
        tmp = archive.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        _run(["buildah", "push", "--quiet", ref, f"oci-archive:{tmp}:{ref}"], f"saving {ref}")
        tmp.rename(archive)
    return archive


def _load(ref: str, cache: Path) -> bool:
    """Load ``ref`` from its cached archive into buildah's storage when it is not there; False when no archive."""
    if exists(ref):
        return True
    archive = _archive(cache, ref)
    if not archive.is_file():
        return False
    image_id = _run(["buildah", "pull", "--quiet", f"oci-archive:{archive}"], f"loading {archive.name}").split()[-1]
    _run(["buildah", "tag", image_id, ref], f"tagging {ref}")
    return True


def ensure_base(debs: tuple[str, ...], cache: Path, log: Log) -> str:
    """The Debian base with ``debs`` (made with mmdebstrap once, then reused); returns its reference."""
    ref = f"{PREFIX}/base:{base_tag(debs)}"
    if _load(ref, cache):
        return ref
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: run ./task deps (scripts/test-debs.txt lists it)")
    started = time.monotonic()
    log(f"images: base {ref}: mmdebstrap {SUITE} with {', '.join(sorted(debs))} (first time only, about a minute)")
    with tempfile.TemporaryDirectory(prefix="homelab-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--quiet", "--variant=essential", f"--include={','.join(sorted(set(debs)))}"]
        cmd += ["--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]  # no usrmerge package (and its perl)
        if shutil.which("eatmydata"):  # dpkg without fsync: several times faster, and the result is a tarball
            cmd += ["--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata"]
        excludes = EXCLUDES + (SLIM_EXCLUDES if slim(debs) else ())
        cmd += [f"--dpkgopt=path-exclude={pattern}" for pattern in excludes]
        if slim(debs):
            cmd += [f"--customize-hook=upload {SLIM_SCRIPT} /slim.py"]
            cmd += ['--customize-hook=chroot "$1" python3 /slim.py base && rm "$1/slim.py"']
        # the dpkg/apt leftovers of the build itself: no apt lists or caches, no logs
        cmd += ["--customize-hook=rm -rf $1/var/cache/debconf/*-old $1/var/lib/dpkg/*-old $1/var/log/*"]
        _run([*cmd, SUITE, str(tarball), MIRROR], f"mmdebstrap for {ref} (is {MIRROR} reachable?)")
        container = _run(["buildah", "from", "--quiet", "scratch"], "buildah from scratch").strip()
        try:
            _run(["buildah", "add", "--quiet", container, str(tarball), "/"], "adding the base's root filesystem")
            path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            config = ["--env", f"PATH={path}", "--env", "LANG=C.UTF-8", "--cmd", "/bin/sh"]
            config += ["--label", f"org.opencontainers.image.description=Debian {SUITE} + {' '.join(sorted(debs))}"]
            _run(["buildah", "config", *config, container], "configuring the base")
            _run(["buildah", "commit", "--quiet", container, ref], f"committing {ref}")
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    _save(ref, cache)
    log(f"images: base {ref} made in {time.monotonic() - started:.1f} s")
    return ref


# One-file images of the project's own pinned, sha256-checked tools, for the Dockerfile's stages of the same name:
# tool -> (its path in the checkout, the script of `./task deps` that installs it, the path in the image)
TOOLS = {
    "helm": (HELM_LINK, "scripts/ensure-helm.sh", "/usr/bin/helm"),
    "restic": (Path(".cache/bin/restic"), "scripts/ensure-restic.sh", "/usr/bin/restic"),
}
# The image targets that copy a tool (so its digest is part of their tag)
TOOL_OF_TARGET = {"bootstrap": "helm", "backup": "restic"}


def _tool(root: Path, name: str) -> tuple[Path, str]:
    link, script, _ = TOOLS[name]
    path = (root / link).resolve()
    if not path.is_file():
        raise ImageError(f"{root / link} is missing: run ./task deps ({script})")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _helm(root: Path) -> tuple[Path, str]:
    return _tool(root, "helm")


def ensure_tool(root: Path, cache: Path, log: Log, name: str) -> tuple[str, str]:
    """A tool (helm, restic: the project's pinned, sha256-checked binaries) as a one-file image for the
    Dockerfile's ``<NAME>_IMAGE`` build argument."""
    path, sha = _tool(root, name)
    ref = f"{PREFIX}/{name}:{sha[:16]}"
    if not _load(ref, cache):
        container = _run(["buildah", "from", "--quiet", "scratch"], "buildah from scratch").strip()
        try:
            _run(
                ["buildah", "copy", "--quiet", "--chmod", "0755", container, str(path), TOOLS[name][2]],
                f"copying {name}",
            )
            _run(["buildah", "commit", "--quiet", container, ref], f"committing {ref}")
        finally:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        _save(ref, cache)
        log(f"images: {ref} made from {path}")
    return ref, sha


def ensure_helm(root: Path, cache: Path, log: Log) -> tuple[str, str]:
    return ensure_tool(root, cache, log, "helm")


def _uncompressed(archive: Path) -> int:
    """Sum of the uncompressed layer sizes recorded in the OCI archive (what a node unpacks)."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return member.read()

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        total = 0
        for layer in manifest["layers"]:
            member = tar.getmember(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}")
            if layer["mediaType"].endswith("+gzip") or layer["mediaType"].endswith(".gzip"):
                with tar.extractfile(member) as raw, gzip.open(raw) as unpacked:  # type: ignore[union-attr]
                    total += sum(len(chunk) for chunk in iter(lambda: unpacked.read(1 << 20), b""))
            else:
                total += member.size
        return total


def manifest_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    return str(index["manifests"][0]["digest"])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(root: Path, cache: Path, log: Log, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Build (or reuse) every image; returns the index entries and writes ``cache/index.json``."""
    if shutil.which("buildah") is None:
        raise ImageError("buildah is not installed: run ./task deps (scripts/test-debs.txt lists it)")
    cache.mkdir(parents=True, exist_ok=True)
    helm_ref, helm_sha = ensure_helm(root, cache, log)
    # every build gets every tool image: buildah resolves each stage's FROM, even of stages its target does not use
    restic_ref, _ = ensure_tool(root, cache, log, "restic")
    try:  # a cached archive keeps its index entry (no re-hashing of hundreds of MB when nothing changed)
        known = {e["archive"]: e for e in read_index(cache)}
    except (ImageError, ValueError, KeyError):
        known = {}
    entries = []
    for image in discover(root):
        if only and image.name not in only:
            continue
        tag = image_tag(root, image, helm_sha)
        ref = f"{PREFIX}/{image.name}:{tag}"
        started = time.monotonic()
        archive = _archive(cache, ref)
        if archive.is_file():
            state = "cached"
        else:
            base = ensure_base(BASE_DEBS + image.debs, cache, log)
            build_base = ensure_base(BUILD_DEBS, cache, log)
            log(f"images: {ref}: building (buildah bud, target {image.target})")
            args = {
                "SERVICE": image.name,
                "BASE": base,
                "BUILD_BASE": build_base,
                "HELM_IMAGE": helm_ref,
                "RESTIC_IMAGE": restic_ref,
            }
            cmd = ["buildah", "bud", "--isolation", "chroot", "--layers", "--pull-never", "--quiet"]
            cmd += [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
            if HOST_CA.is_file():  # the host's trust store for the build steps' downloads (see the Dockerfile)
                cmd += ["--volume", f"{HOST_CA}:{HOST_CA}:ro"]
            cmd += ["--target", image.target, "-f", "services/Dockerfile", "-t", ref, "."]
            before = _containers()
            try:
                _run(cmd, f"building {ref}", cwd=root)
            finally:
                # buildah 1.28 leaves a working container for each stage without instructions (`FROM x AS helm`,
                # the final `FROM runtime AS service`) and for a failed build; they would pin stale images
                for container in _containers() - before:
                    subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
            _save(ref, cache)
            state = "built"
        seconds = time.monotonic() - started
        previous = known.get(archive.name)
        if state == "cached" and previous and previous.get("archive_size") == archive.stat().st_size:
            entries.append(previous)
            log(f"images: {ref} cached, {previous['size'] / 1e6:.1f} MB")
            continue
        size = _uncompressed(archive)
        entry: dict[str, Any] = {
            "name": image.name,
            "tag": tag,
            "ref": ref,
            "archive": archive.name,
            "sha256": sha256_file(archive),
            "digest": manifest_digest(archive),
            "size": size,
            "archive_size": archive.stat().st_size,
        }
        mb = size / 1e6
        note = "" if mb <= SIZE_GOAL_MB else f" (over the {SIZE_GOAL_MB:.0f} MB goal)"
        log(f"images: {ref} {state} in {seconds:.1f} s, {mb:.1f} MB{note}")
        entries.append(entry)
    if not only:
        write_index(cache, entries)
        keep = {e["archive"] for e in entries} | {_archive(cache, helm_ref).name, _archive(cache, restic_ref).name}
        keep |= {_archive(cache, f"{PREFIX}/base:{base_tag(d)}").name for d in _base_sets(root)}
        prune(cache, keep, log)
    return entries


def _containers() -> set[str]:
    out = _run(["buildah", "containers", "--quiet", "--notruncate"], "listing buildah's working containers")
    return set(out.split())


def _base_sets(root: Path) -> list[tuple[str, ...]]:
    return [BUILD_DEBS, *(BASE_DEBS + image.debs for image in discover(root))]


#: An archive the current tree does not build is removed once it is this old: another checkout sharing the cache
#: (a second clone, a CI run beside a working tree) may have built it moments ago and still be using it.
STALE_AFTER_S = 6 * 3600


def prune(cache: Path, keep: set[str], log: Log, now: float | None = None) -> None:
    """Remove the archives and buildah images of ours that the current tree no longer builds (see STALE_AFTER_S)."""
    now = time.time() if now is None else now
    for archive in sorted(cache.glob("*.tar")):
        if archive.name not in keep and now - archive.stat().st_mtime > STALE_AFTER_S:
            archive.unlink()
            log(f"images: removed the stale archive {archive.name}")
    current = {name.removesuffix(".tar") for name in keep}
    out = subprocess.run(["buildah", "images", "--json"], capture_output=True, text=True, check=False).stdout
    for image in json.loads(out or "[]"):
        for name in image.get("names") or []:
            repo, _, tag = name.rpartition(":")
            stem = f"{repo.rsplit('/', 1)[1]}-{tag}"
            if repo.startswith(f"{PREFIX}/") and stem not in current and not (cache / f"{stem}.tar").exists():
                subprocess.run(["buildah", "rmi", name], capture_output=True, check=False)


def write_index(cache: Path, entries: list[dict[str, Any]]) -> Path:
    path = cache / "index.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"images": entries}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_index(cache: Path) -> list[dict[str, Any]]:
    path = cache / "index.json"
    if not path.is_file():
        raise ImageError(f"no image index at {path}: run ./task images")
    images: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["images"]
    return images


def ensure_loaded(entry: dict[str, Any], cache: Path) -> str:
    """The image of an index entry in buildah's storage (loaded from its archive when needed)."""
    if not _load(entry["ref"], cache):
        raise ImageError(f"{entry['ref']}: no archive {cache / entry['archive']}: run ./task images")
    return str(entry["ref"])


def pin(root: Path, entries: list[dict[str, Any]], log: Log) -> list[Path]:
    """Write each image's tag into ``charts/<name>/values.yaml`` (the line after its ``repository:``)."""
    changed = []
    for entry in entries:
        values = root / "charts" / entry["name"] / "values.yaml"
        if not values.is_file():
            continue
        repo = f"{PREFIX}/{entry['name']}"
        text = values.read_text(encoding="utf-8")
        pattern = re.compile(rf"^(\s*)repository: {re.escape(repo)}\n\1tag: \"?[^\"\n]*\"?$", re.MULTILINE)
        if not pattern.search(text):
            raise ImageError(f"{values}: no `repository: {repo}` followed by a `tag:` line to pin")
        new = pattern.sub(rf'\1repository: {repo}\n\1tag: "{entry["tag"]}"', text)
        new = re.sub(rf"{re.escape(repo)}:[A-Za-z0-9._-]+", f"{repo}:{entry['tag']}", new)  # full references too
        if new != text:
            values.write_text(new, encoding="utf-8")
            changed.append(values)
            log(f"images: pinned {repo}:{entry['tag']} in {values.relative_to(root)}")
    return changed


def stale_pins(root: Path, entries: list[dict[str, Any]]) -> list[str]:
    """The charts whose pinned tag is not the one this tree builds (what ``--pin`` would change)."""
    stale = []
    for entry in entries:
        values = root / "charts" / entry["name"] / "values.yaml"
        if values.is_file() and f'tag: "{entry["tag"]}"' not in values.read_text(encoding="utf-8"):
            stale.append(f"{values.relative_to(root)} (builds {entry['tag']})")
    return stale


def push(entries: list[dict[str, Any]], cache: Path, registry: str, log: Log, *, tls_verify: bool = True) -> None:
    """Push every image of ``entries`` (loaded from its archive) to ``registry`` (``host[:port]``) as
    ``homelab/<name>:<tag>``.

    The credential comes from HOMELAB_REGISTRY_USERNAME / HOMELAB_REGISTRY_PASSWORD (Woodpecker secrets) and goes
    to buildah in a private auth file, never on a command line."""
    username = os.environ.get("HOMELAB_REGISTRY_USERNAME", "")
    password = os.environ.get("HOMELAB_REGISTRY_PASSWORD", "")
    if not username or not password:
        raise ImageError("pushing needs HOMELAB_REGISTRY_USERNAME and HOMELAB_REGISTRY_PASSWORD (the push credential)")
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    with tempfile.TemporaryDirectory(prefix="homelab-push-") as tmp:
        auth = Path(tmp) / "auth.json"
        auth.touch(mode=0o600)
        auth.write_text(json.dumps({"auths": {registry: {"auth": token}}}), encoding="utf-8")
        for entry in entries:
            ref = ensure_loaded(entry, cache)
            target = f"{registry}/homelab/{entry['name']}:{entry['tag']}"
            started = time.monotonic()
            cmd = ["buildah", "push", "--quiet", "--authfile", str(auth), f"--tls-verify={str(tls_verify).lower()}"]
            _run([*cmd, ref, f"docker://{target}"], f"pushing {target}")
            log(f"images: pushed {target} in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="homelab-images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("HOMELAB_SOURCE", Path.cwd())))
    parser.add_argument("--cache", type=Path, help="default: <root>/.cache/homelab/images")
    parser.add_argument("--pin", action="store_true", help="write the tags into charts/<name>/values.yaml")
    parser.add_argument(
        "--tags", action="store_true", help="print each image's tag (no build) and exit; with --pin, pin them (no root)"
    )
    parser.add_argument(
        "--push",
        metavar="REGISTRY",
        help="after the build, check the charts pin these tags and push every image to REGISTRY (host[:port])",
    )
    parser.add_argument("--insecure", action="store_true", help="push over plain HTTP (an in-cluster Service)")
    parser.add_argument("only", nargs="*", help="build only these images (the index is not rewritten)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    cache = args.cache or root / ".cache" / "homelab" / "images"

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        if args.tags:
            _, helm_sha = _helm(root)
            tags = [{"name": image.name, "tag": image_tag(root, image, helm_sha)} for image in discover(root)]
            for entry in tags:
                print(f"{PREFIX}/{entry['name']}:{entry['tag']}")
            if args.pin:  # the tags are digests of the inputs: pinning needs no build
                pin(root, tags, log)
            return 0
        started = time.monotonic()
        entries = build(root, cache, log, set(args.only) or None)
        total = sum(e["size"] for e in entries) / 1e6
        seconds = time.monotonic() - started
        log(f"images: {len(entries)} image(s), {total:.0f} MB in all, in {seconds:.1f} s; index {cache / 'index.json'}")
        if args.pin:
            pin(root, entries, log)
        if args.push:
            stale = stale_pins(root, entries)
            if stale:  # Argo CD deploys the pinned tags: pushing others would change nothing on the cluster
                raise ImageError(f"pins differ from this tree: {', '.join(stale)}: run ./task images -- --pin, commit")
            push(entries, cache, args.push, log, tls_verify=not args.insecure)
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
