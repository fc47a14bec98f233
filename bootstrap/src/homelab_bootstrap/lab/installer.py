"""The lab's stand-in for the Ubuntu installer: a Debian kernel plus a tiny busybox initrd, built from Debian packages.

Without internet neither the Ubuntu ISO nor its packages exist here, so the virtual lab (and the end-to-end tests,
which use this same code) boot this instead. On the network it behaves like subiquity + cloud-init: it reads
``ds=nocloud;s=<seed URL>`` from the kernel command line, fetches ``meta-data`` and ``user-data``, checks they are
meant for this machine (its MAC is in the seed URL, user-data's hostname equals meta-data's ``local-hostname``),
fetches every image archive the late-commands name and checks its sha256 (Day 0 images),
"installs" (writes a boot sector to the disk that announces itself on the serial port when booted), reports
``POST <seed URL>installed`` with the user-data's nonce as the real late-commands do with curl, prints a marker
and powers off.

Markers on the serial console (``/dev/ttyS0``, whatever ``console=`` the boot script chose):
``HOMELAB-INSTALLER: ISO range ok <url>`` once the kernel line's ``url=`` (the ISO, which casper would download
into RAM) answered a byte range with the ISO 9660 signature, ``HOMELAB-INSTALLER: installed <hostname> <mac>`` on
success, ``HOMELAB-INSTALLER: FAILED <reason>`` otherwise;
the boot sector prints ``HOMELAB-DISK: booted from disk``.

The build is cached in a directory keyed by every input (kernel package, busybox binary, this module's scripts), so
a test session or ``task up`` pays for it once (a few seconds: unpacking the kernel package dominates).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from homelab_bootstrap.lab.commands import LabError, require_tool, run

INSTALLED_MARKER = "HOMELAB-INSTALLER: installed"
FAILED_MARKER = "HOMELAB-INSTALLER: FAILED"
DISK_MARKER = "HOMELAB-DISK: booted from disk"
#: Printed when the kernel line's ``url=`` (the installer ISO) answered a byte range with the ISO's "CD001".
ISO_MARKER = "HOMELAB-INSTALLER: ISO range ok"
KERNEL_METAPACKAGE = "linux-image-amd64"
#: NIC and disk drivers the lab machines use (virtio-net-pci, virtio-blk; e1000 for machines on QEMU's default NIC).
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "e1000")

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "HOMELAB-INSTALLER: $*" > /dev/ttyS0; }
fail() { say "FAILED $*"; sync; poweroff -f; sleep 30; }
for m in $(cat /etc/modules-load); do modprobe "$m" || say "modprobe $m failed"; done
say "started, kernel $(uname -r)"
seed=$(sed -n 's/.*ds=nocloud[-a-z]*;s=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$seed" ] || fail "no ds=nocloud;s=<url> on the kernel command line: $(cat /proc/cmdline)"
case "$seed" in */) ;; *) fail "seed URL does not end in /: $seed" ;; esac
nic=""
for i in $(seq 1 100); do
  for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] || { nic=$name; break; }
  done
  [ -n "$nic" ] && break
  sleep 0.1
done
[ -n "$nic" ] || fail "no network interface (driver missing?)"
mac=$(cat /sys/class/net/$nic/address)
machyp=$(echo "$mac" | tr ':' '-')
case "$seed" in */seed/$machyp/*) ;; *) fail "seed URL $seed is not for my MAC $mac" ;; esac
ip link set "$nic" up
udhcpc -i "$nic" -n -q -t 10 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 || fail "no DHCP lease on $nic"
say "$nic $mac has $(ip -4 -o addr show dev "$nic" | awk '{print $4}'), seed $seed"
iso=$(sed -n 's/.* url=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$iso" ]; then
  # casper would download the whole ISO from url=; the stand-in asks for its volume descriptor's "CD001" only
  case "$iso" in http://*) ;; *) fail "url=$iso is not an http:// URL" ;; esac
  hostport=${iso#http://}; hostport=${hostport%%/*}; path="/${iso#http://*/}"
  host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$hostport" ] && port=80
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nRange: bytes=32769-32773\r\n\r\n' "$path" "$hostport" \
    | nc -w 10 "$host" "$port" > /tmp/iso-range 2>/dev/null
  status=$(head -n1 /tmp/iso-range)
  echo "$status" | grep -q '^HTTP/1\.[01] 206 ' || fail "ISO $iso: no 206 answer to a byte range: $status"
  grep -q 'CD001' /tmp/iso-range || fail "ISO $iso: bytes 32769-32773 are not an ISO 9660 volume descriptor"
  say "ISO range ok $iso"
fi
wget -q -O /tmp/meta-data "${seed}meta-data" || fail "cannot fetch ${seed}meta-data"
wget -q -O /tmp/user-data "${seed}user-data" || fail "cannot fetch ${seed}user-data"
strip() { sed -e 's/^[^:]*: *//' -e 's/^["'"'"']//' -e 's/["'"'"'] *$//' -e 's/ *$//'; }
host=$(grep -m1 '^local-hostname:' /tmp/meta-data | strip)
[ -n "$host" ] || fail "meta-data has no local-hostname"
head -n1 /tmp/user-data | grep -q '^#cloud-config' || fail "user-data is not #cloud-config"
uhost=$(grep -m1 '^ *hostname:' /tmp/user-data | strip)
[ "$uhost" = "$host" ] || fail "user-data hostname '$uhost' is not meta-data's local-hostname '$host'"
# Day 0 images: each OCI archive a late-command puts into k3s's import folder is fetched and checked by sha256.
image_re="s#.*curl -fsS -o [^ ]* \(http[^ ]*/images/[^ ]*\) .*echo '*\([0-9a-f]\{64\}\) .*#\1=\2#p"
for pair in $(sed -n "$image_re" /tmp/user-data); do
  url=${pair%=*}; want=${pair##*=}
  got=$(wget -q -O - "$url" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "image ${url##*/}: sha256 $got, user-data says $want"
  say "image ${url##*/} verified"
done
disk=/dev/vda
[ -b "$disk" ] || fail "no install disk $disk"
dd if=/lib/homelab/bootsector.bin of="$disk" bs=512 count=1 conv=notrunc 2>/dev/null || fail "cannot write $disk"
sync
# like the real last late-command: the report carries the nonce of the user-data this installer received
nonce=$(grep -o 'nonce=[A-Za-z0-9_-]*' /tmp/user-data | head -n1)
wget -q -O /tmp/installed --post-data "${nonce:-nonce=}" "${seed}installed" || fail "cannot report ${seed}installed"
say "installed $host $mac"
sync
poweroff -f
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""

# 16-bit real mode, loaded at 0x7c00: print the message on COM1 (0x3f8), then halt forever.
#   cli; xor ax,ax; mov ds,ax; mov si,0x7c16; mov dx,0x3f8
#   l: lodsb; test al,al; jz h; out dx,al; jmp l
#   h: hlt; jmp h
_BOOT_CODE = bytes.fromhex("fa31c08ed8be167cbaf803ac84c07403eeebf8f4ebfd")


def boot_sector() -> bytes:
    """An MBR whose only job is to say on the serial port that the machine booted from its disk."""
    code = _BOOT_CODE + f"\r\n{DISK_MARKER}\r\n".encode() + b"\0"
    return code.ljust(510, b"\0") + b"\x55\xaa"


@dataclass(frozen=True)
class Installer:
    """A built installer: the kernel and initrd that go into the lab's stand-in ISO as ``casper/vmlinuz`` and
    ``casper/initrd`` (see :mod:`.release`)."""

    kernel: Path
    initrd: Path
    kernel_version: str


def _kernel_package_name() -> str:
    out = run(
        ["apt-cache", "depends", KERNEL_METAPACKAGE],
        hint="is this Debian with apt? run apt-get update so the kernel package is known",
    )
    match = re.search(r"Depends: (linux-image-\S+)", out)
    if match is None:
        raise LabError(f"apt-cache depends {KERNEL_METAPACKAGE}: no linux-image dependency in {out!r}")
    return match.group(1)


def kernel_package(cache_dir: Path) -> Path:
    """A Debian kernel package in ``cache_dir``: the cached one, else ``apt-get download`` (not installed)."""
    debs = sorted(cache_dir.glob("linux-image-*-amd64_*.deb"))
    if debs:
        return debs[-1]
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = _kernel_package_name()
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        run(
            ["apt-get", "download", name],
            cwd=Path(tmp),
            hint=f"needs a reachable Debian mirror (apt-get update) or a linux-image-*-amd64_*.deb in {cache_dir}",
            timeout=600,
        )
        downloaded = sorted(Path(tmp).glob("linux-image-*.deb"))
        if not downloaded:
            raise LabError(f"apt-get download {name} produced no .deb")
        final = cache_dir / downloaded[-1].name
        downloaded[-1].replace(final)
    return final


def _module_depends(ko: Path) -> list[str]:
    """The ``depends=`` entry of a kernel module's .modinfo section (names with '-' folded to '_')."""
    match = re.search(rb"\0depends=([^\0]*)\0", ko.read_bytes())
    if match is None or not match.group(1):
        return []
    return [dep.replace("-", "_") for dep in match.group(1).decode().split(",") if dep]


def module_closure(modules_root: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files of ``wanted`` and everything they depend on, dependencies first (a load order)."""
    index: dict[str, Path] = {}
    for ko in modules_root.rglob("*.ko"):
        index[ko.name.removesuffix(".ko").replace("-", "_")] = ko
    builtin = set()
    builtin_list = modules_root / "modules.builtin"
    if builtin_list.exists():
        builtin = {Path(line).name.removesuffix(".ko").replace("-", "_") for line in builtin_list.read_text().split()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name not in index:
            raise LabError(f"kernel module {name} (needed by {' -> '.join(chain) or 'the lab'}) is not in the package")
        seen.add(name)
        for dep in _module_depends(index[name]):
            visit(dep, (*chain, name))
        order.append(index[name])

    for name in wanted:
        visit(name, ())
    return order


def _newc(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A cpio "newc" archive from (path, mode, data, rdev major, rdev minor): owner root, mtime 0 (reproducible)."""
    out = io.BytesIO()
    for ino, (path, mode, data, rmajor, rminor) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0, 0)], start=1):
        name = path.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmajor, rminor, len(name), 0)
        out.write(b"070701" + b"".join(f"{field:08x}".encode() for field in fields) + name)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))
    return out.getvalue()


def _cache_key(deb: Path, busybox: Path) -> str:
    digest = hashlib.sha256()
    for part in (deb.name.encode(), busybox.read_bytes(), INIT_SCRIPT.encode(), UDHCPC_SCRIPT.encode(),
                 boot_sector(), ",".join(MODULES).encode()):  # fmt: skip
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def build_installer(cache_dir: Path) -> Installer:
    """The installer for these inputs, from ``cache_dir`` when built before, else built now (atomically)."""
    require_tool("dpkg-deb", "dpkg")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise LabError("/bin/busybox not found: install the Debian package busybox-static")
    deb = kernel_package(cache_dir)
    key = _cache_key(deb, busybox)
    out_dir = cache_dir / f"installer-{key}"
    if (out_dir / "initrd").exists() and (out_dir / "vmlinuz").exists():
        return Installer(out_dir / "vmlinuz", out_dir / "initrd", (out_dir / "version").read_text().strip())
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        unpacked = Path(tmp) / "deb"
        run(["dpkg-deb", "-x", str(deb), str(unpacked)], hint=f"is {deb} a complete kernel package?", timeout=300)
        versions = sorted(p.name for p in (unpacked / "lib/modules").iterdir())
        if len(versions) != 1:
            raise LabError(f"{deb}: expected one kernel version under lib/modules, found {versions}")
        version = versions[0]
        modules_root = unpacked / "lib/modules" / version
        closure = module_closure(modules_root, MODULES)
        entries: list[tuple[str, int, bytes, int, int]] = []
        for directory in ("bin", "dev", "etc", "lib", "lib/homelab", "proc", "sys", "tmp", "lib/modules",
                          f"lib/modules/{version}"):  # fmt: skip
            entries.append((directory, stat.S_IFDIR | 0o755, b"", 0, 0))
        entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1))
        entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0, 0))
        entries.append(("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode(), 0, 0))
        entries.append(("etc/udhcpc.script", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode(), 0, 0))
        entries.append(("lib/homelab/bootsector.bin", stat.S_IFREG | 0o644, boot_sector(), 0, 0))
        load_order = [ko.name.removesuffix(".ko") for ko in closure]
        entries.append(("etc/modules-load", stat.S_IFREG | 0o644, "\n".join(load_order).encode() + b"\n", 0, 0))
        made_dirs: set[str] = set()
        for ko in closure:
            rel = ko.relative_to(modules_root).as_posix()
            parts = rel.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = f"lib/modules/{version}/" + "/".join(parts[:depth])
                if directory not in made_dirs:
                    made_dirs.add(directory)
                    entries.append((directory, stat.S_IFDIR | 0o755, b"", 0, 0))
            entries.append((f"lib/modules/{version}/{rel}", stat.S_IFREG | 0o644, ko.read_bytes(), 0, 0))
        index = {ko.name.removesuffix(".ko").replace("-", "_"): ko.relative_to(modules_root).as_posix()
                 for ko in closure}  # fmt: skip
        dep_lines = [
            f"{index[name]}: " + " ".join(index[d] for d in _module_depends(modules_root / index[name]) if d in index)
            for name in index
        ]
        entries.append((f"lib/modules/{version}/modules.dep", stat.S_IFREG | 0o644, "\n".join(dep_lines).encode()
                        + b"\n", 0, 0))  # fmt: skip
        staging = Path(tmp) / "out"
        staging.mkdir()
        shutil.copyfile(unpacked / "boot" / f"vmlinuz-{version}", staging / "vmlinuz")
        (staging / "initrd").write_bytes(gzip.compress(_newc(entries), compresslevel=6, mtime=0))
        (staging / "version").write_text(version + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.replace(out_dir)
    return Installer(out_dir / "vmlinuz", out_dir / "initrd", version)
