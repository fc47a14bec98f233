"""Every image's size against the 120 MB goal, its slimmed base against the same base as Debian packages it.

Run as root (buildah): ``.venv/bin/python benchmarks/image_size.py`` (builds what is missing, else reuses the
machine's image cache, ``~/.cache/homelab/images`` or ``HOMELAB_IMAGE_CACHE``, as tests/images does).

Printed per image: its uncompressed size (what a node unpacks; the sum of its layers), the OCI archive's size
(gzip-compressed layers: what travels), and how much of it is the base. The same-run baseline is the build base:
the same Debian packages (plus python3-venv) without the runtime slimming of homelab_bootstrap/slim.py, i.e. what
the bases were before it. Before the slimming (commit f126512) the service images were 203-225 MB.

For scale, figures of comparable upstream images (linux/amd64) cannot be measured here: no registry but PyPI,
Debian and npm is reachable, and no published size could be found in the sources this machine can read. The
figures below are therefore approximate and marked so: external-dns (a Go binary on distroless), gethomepage
(Node.js on Alpine), python:3.11-slim-bookworm (the Dockerfile's default BASE, nothing of ours in it).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from homelab_bootstrap import images  # noqa: E402

UPSTREAM_MB = {"external-dns v0.15": 75.0, "gethomepage v0.10": 230.0, "python:3.11-slim-bookworm": 125.0}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: buildah")
    cache = Path(os.environ.get("HOMELAB_IMAGE_CACHE") or Path.home() / ".cache" / "homelab" / "images")
    started = time.monotonic()
    entries = images.build(REPO, cache, lambda line: None)
    print(f"{len(entries)} images built or reused in {time.monotonic() - started:.1f} s ({cache})")
    debs = {image.name: image.debs for image in images.discover(REPO)}
    base_mb: dict[str, float] = {}

    def base_size(deb_set: tuple[str, ...]) -> float:
        ref = images.ensure_base(deb_set, cache, print)
        key = ref.rsplit(":", 1)[1]
        if key not in base_mb:
            base_mb[key] = images._uncompressed(images._archive(cache, ref)) / 1e6
        return base_mb[key]

    goal = images.SIZE_GOAL_MB
    print(f"\nimage          uncompressed   archive   base    ours   goal <= {goal:.0f} MB (Python services)")
    for entry in sorted(entries, key=lambda e: e["name"]):
        name = entry["name"]
        size, archive = entry["size"] / 1e6, entry["archive_size"] / 1e6
        base = base_size(images.BASE_DEBS + debs[name])
        service = not debs[name] and name != "bootstrap"
        verdict = ("meets" if size <= goal else "MISSES") if service else "n/a (git, ssh, helm, the checkout)"
        print(f"  {name:<12} {size:>8.1f} MB {archive:>7.1f} MB {base:>6.1f} {size - base:>7.1f}   {verdict}")
    slim = base_size(images.BASE_DEBS)
    packaged = base_size(images.BUILD_DEBS)
    print("\nbaseline (same run): the runtime base against the same Debian packages unslimmed")
    print(f"  slimmed runtime base  {slim:>6.1f} MB   ({' '.join(images.BASE_DEBS)}; homelab_bootstrap/slim.py)")
    print(f"  as Debian packages it {packaged:>6.1f} MB   (the build base: the same + python3-venv)")
    print(f"  ratio                 {slim / packaged:>6.2f}")
    print("\nupstream images for scale (approximate, linux/amd64, uncompressed; not measurable here)")
    for name, mb in UPSTREAM_MB.items():
        print(f"  {name:<28} ~{mb:.0f} MB")


if __name__ == "__main__":
    main()
