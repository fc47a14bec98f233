"""``python -m homelab_bootstrap.lab --site site.yaml``: provision the site's machines as VMs in the virtual lab.

The metal stage of ``task up`` for people without spare machines, runnable on its own: builds the lab LAN, starts
our pxe + autoinstall on it, powers every machine on and waits until each reports installed. Without internet the
installer is the lab's busybox initrd (see :mod:`.installer`), so it stops after the installer fetched its config
and reported back. Needs root.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from homelab_bootstrap.lab.commands import LabError
from homelab_bootstrap.lab.lab import VirtualLab
from homelab_bootstrap.lab.qemu import Firmware


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homelab_bootstrap.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True, help="the site file (YAML)")
    parser.add_argument("--firmware", choices=[f.value for f in Firmware], default=Firmware.UEFI_PXE.value)
    parser.add_argument("--cache", type=Path, default=Path(".cache/lab"), help="installer build cache")
    parser.add_argument("--memory", type=int, default=512, help="MB of RAM per machine")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every machine")
    args = parser.parse_args(argv)
    from homelab_common.site import SiteError, load_site

    try:
        site = load_site(args.site)
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] lab: {line}", flush=True)

    try:
        with tempfile.TemporaryDirectory(prefix="homelab-lab-") as tmp:
            lab = VirtualLab(site, args.site.resolve(), Path(tmp), args.cache.resolve(), Firmware(args.firmware),
                             args.memory)  # fmt: skip
            with lab:
                say(f"LAN {site.lan.subnet} up, boot server {lab.bootserver_ip}")
                lab.start_homelab()
                say("pxe + autoinstall running")
                lab.provision(timeout=args.timeout, progress=say)
        say("every machine is installed")
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
