"""Vendor the icons the homepage ships, from two npm packages, into the service's package data.

Run from the repository root after changing a list or a version below (npm must be on PATH)::

    python services/homepage/scripts/vendor_icons.py

It downloads each package with ``npm pack`` (pinned version, the tarball's sha512 checked against the value
below), copies the listed SVGs into ``src/homelab_homepage/static/icons/{si,mdi}/`` with a fill colour set (the
brand's colour for Simple Icons, a neutral grey for Material Design Icons, so they read on a light tile in either
theme), and writes ``index.json`` (name → title, colour, licence) and ``LICENSES.md``. The output is committed:
the image build stays offline and the service never fetches an icon at run time.

Licences: Simple Icons is CC0-1.0 as a collection, a few icons carry their own licence (recorded per icon from the
package's data file; brand marks remain their owners' trademarks). Material Design Icons (@mdi/svg) are under the
Pictogrammers Free License (Apache-2.0 for the icons).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SIMPLE_ICONS = (
    "simple-icons",
    "16.37.0",
    "8mCJIhpMYOL9g13GW59EiL3sVXJnTEKGCTZFaekl9UQ3Qo0SwVjnLaJ82QiaH8BKBdouEDzrHMXIWh8cBIy48A==",
)
MDI = ("@mdi/svg", "7.4.47", "WQ2gDll12T9WD34fdRFgQVgO8bag3gavrAgJ0frN4phlwdJARpE6gO1YvLEMJR0KKgoc+/Ea/A0Pp11I00xBvw==")
MDI_FILL = "#4b5563"
# Icons under other terms (copyleft, non-commercial, "custom") are not shipped; the script refuses them.
PERMISSIVE = {"CC0-1.0", "CC-BY-4.0", "MIT", "Apache-2.0"}

# Apps people run in homelabs (Simple Icons slugs).
SI_SLUGS = """
actualbudget adguard ansible archlinux argo audiobookshelf authelia authentik bitwarden bookstack borgbackup caddy
calibreweb ceph changedetection cilium cloudflare codeberg coder collaboraonline discord docker drone duckduckgo
duplicati eclipsemosquitto element emby erpnext esphome excalidraw fireflyiii freshrss frigate ghost gitea github
gitlab glance grafana grocy helm homarr homeassistant homebridge homepage immich influxdb invoiceninja istio
jellyfin joplin jupyter k3s kibana kubernetes libreoffice linkerd linux logseq longhorn mariadb mastodon matomo
matrix mattermost mealie mikrotik minio mqtt mysql n8n netdata nextcloud nginx nixos nodered ntfy obsidian octoprint
odoo onlyoffice openhab openmediavault opensearch opentelemetry opentofu openvpn openwrt opnsense owncloud
paperlessngx pfsense pihole plausibleanalytics plex portainer postgresql prometheus proxmox qbittorrent qnap
rabbitmq radarr rancher raspberrypi rclone redis renovate rocketdotchat searxng seafile sentry sonarr speedtest
syncthing synology tailscale tasmota terraform traefikproxy transmission trilium truenas ubiquiti ubuntu umami
unraid uptimekuma vault vaultwarden vscodium wallabag wikidotjs wireguard wordpress zigbee2mqtt
""".split()  # noqa: SIM905 - a list people edit by hand

# Generic shapes for things outside the cluster and for apps without a brand (Material Design Icons names).
MDI_NAMES = """
access-point application bookmark cctv cloud console database dns harddisk home home-assistant lan monitor nas
network printer router router-network router-wireless server server-network shield-check television-play web
""".split()  # noqa: SIM905 - a list people edit by hand

SERVICE = Path(__file__).resolve().parents[1]
OUT = SERVICE / "src" / "homelab_homepage" / "static" / "icons"


def npm_pack(package: str, version: str, integrity: str, workdir: Path) -> Path:
    """Download one package tarball and check it against the pinned sha512 before trusting a byte of it."""
    result = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    filename = json.loads(result.stdout)[0]["filename"]
    tarball = workdir / filename
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != integrity:
        sys.exit(f"{package}@{version}: sha512 {digest} does not match the pinned {integrity}")
    unpacked = workdir / package.replace("/", "_")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    return unpacked / "package"


def with_fill(svg: str, fill: str) -> str:
    """Set the root element's fill and drop ids and titles (the page gives each icon its own alt text)."""
    svg = re.sub(r"<title>.*?</title>", "", svg)
    svg = re.sub(r'\s(id|role)="[^"]*"', "", svg)
    return svg.replace("<svg ", f'<svg fill="{fill}" ', 1).strip() + "\n"


def main() -> None:
    index: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        si = npm_pack(*SIMPLE_ICONS, workdir)
        mdi = npm_pack(*MDI, workdir)
        data = {icon["slug"]: icon for icon in json.loads((si / "data" / "simple-icons.json").read_text())}
        shutil.rmtree(OUT, ignore_errors=True)
        (OUT / "si").mkdir(parents=True)
        (OUT / "mdi").mkdir(parents=True)
        for slug in sorted(set(SI_SLUGS)):
            if slug not in data:
                sys.exit(f"simple-icons {SIMPLE_ICONS[1]} has no icon {slug!r}")
            meta = data[slug]
            licence = (meta.get("license") or {}).get("type", "CC0-1.0")
            if licence not in PERMISSIVE:
                sys.exit(f"simple-icons {slug!r} is under {licence}; only {sorted(PERMISSIVE)} are shipped")
            svg = (si / "icons" / f"{slug}.svg").read_text()
            (OUT / "si" / f"{slug}.svg").write_text(with_fill(svg, f"#{meta['hex']}"))
            index[f"si-{slug}"] = {"title": meta["title"], "color": f"#{meta['hex']}", "license": licence}
        for name in sorted(set(MDI_NAMES)):
            svg = (mdi / "svg" / f"{name}.svg").read_text()
            (OUT / "mdi" / f"{name}.svg").write_text(with_fill(svg, MDI_FILL))
            index[f"mdi-{name}"] = {"title": name.replace("-", " "), "color": MDI_FILL, "license": "Apache-2.0"}
        (OUT / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        (OUT / "LICENSES.md").write_text(
            "# Icons shipped with the homepage\n\n"
            f"- `si/`: Simple Icons {SIMPLE_ICONS[1]} (npm `simple-icons`), CC0-1.0 as a collection; a few icons "
            "carry their own permissive licence (CC-BY-4.0, MIT), marked in `index.json`. Brand marks remain "
            "trademarks of their owners; see "
            "the package's DISCLAIMER.md.\n"
            f"- `mdi/`: Material Design Icons {MDI[1]} (npm `@mdi/svg`), Pictogrammers Free License: the icons "
            "are Apache-2.0.\n\n"
            "Regenerate with `python services/homepage/scripts/vendor_icons.py`.\n\n"
            "## Simple Icons licence\n\n"
            + (si / "LICENSE.md").read_text()
            + "\n## @mdi/svg licence\n\n"
            + (mdi / "LICENSE").read_text()
        )
    print(f"vendored {len(index)} icons into {OUT}")


if __name__ == "__main__":
    main()
