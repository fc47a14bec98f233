"""iPXE boot scripts: what a machine is told to do, from autoinstall's answer. Pure text, no I/O.

Nothing a client sends is copied into a script: the MAC is normalised before it gets here, autoinstall's answer is
validated (:class:`BootInfo`), and the retry script lets iPXE fill in its own ``${mac}`` again. A script is never an
install by default: anything unexpected ends in "wait and ask again" or "exit".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from homelab_common.site import INITRD_ASSET, ISO_ASSET, KERNEL_ASSET
from homelab_pxe.proxy import SCRIPT_QUERY

Action = Literal["install", "local", "ignore", "retry"]
#: A URL safe to put on an iPXE/kernel command line: no spaces, quotes or ``$`` (iPXE would expand ``${...}``).
_SAFE_URL = r"^https?://[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+/$"


class BootInfo(BaseModel):
    """autoinstall's ``GET /api/v1/boot/{mac}`` answer (the provisioning contract)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: ``wait``: pending, but no install window is armed (or it was used): no seed URL, ask again later.
    action: Literal["install", "local", "wait"]
    machine: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
    arch: str = Field(default="amd64", pattern=r"^[a-z0-9_]{1,16}$")
    seed_url: str | None = Field(default=None, pattern=_SAFE_URL)


@dataclass(frozen=True)
class Script:
    action: Action
    text: str


def install(info: BootInfo, http_base: str, kernel_args: str = "") -> Script:
    """Kernel + initrd from our assets over HTTP, booted the way Ubuntu documents netbooting the live server:
    ``ip=dhcp url=<the ISO>`` makes casper download the ISO into RAM and boot from it, ``autoinstall`` and
    ``ds=nocloud;s=<seed>`` point subiquity at the machine's seed (the seed URL is autoinstall's to decide).
    """
    if info.seed_url is None:
        raise ValueError("an install answer needs a seed_url")
    assets = f"{http_base}/assets/{info.arch}"
    cmdline = f"initrd=initrd ip=dhcp url={assets}/{ISO_ASSET} autoinstall ds=nocloud;s={info.seed_url}"
    if kernel_args:
        cmdline += f" {kernel_args}"
    return Script(
        "install",
        "#!ipxe\n"
        f"echo homelab: installing {info.machine} ({info.arch})\n"
        f"kernel {assets}/{KERNEL_ASSET} {cmdline}\n"
        f"initrd {assets}/{INITRD_ASSET}\n"
        "boot\n",
    )


def local(why: str) -> Script:
    """Boot the next device (the disk): ``exit`` back to the firmware; BIOS iPXE needs ``sanboot`` of drive 0x80."""
    return Script(
        "local",
        "#!ipxe\n"
        f"echo homelab: {why} - booting from the local disk\n"
        "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||\n"
        "exit\n",
    )


def ignore(mac: str) -> Script:
    return Script(
        "ignore",
        f"#!ipxe\necho homelab: {mac} is not in the inventory - nothing to install\nsleep 5\nexit\n",
    )


def retry(http_base: str, seconds: int, reason: str) -> Script:
    """autoinstall could not be asked: wait, then fetch this script again (never install blindly)."""
    return Script(
        "retry",
        "#!ipxe\n"
        f"echo homelab: {reason} - asking again in {seconds} s\n"
        f"sleep {seconds}\n"
        f"chain --autofree --replace {http_base}/boot.ipxe?{SCRIPT_QUERY}\n",
    )
