"""``homelab-pxe``: serve (HTTP + proxyDHCP + TFTP), or ``homelab-pxe wake <mac>`` to send one magic packet."""

from __future__ import annotations

import argparse
import os
import sys

from flask import Flask

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import SettingsError
from homelab_common.wol import wake_on_lan
from homelab_pxe.app import Runtime, create_app, start_servers
from homelab_pxe.netinfo import NetworkDetectionError
from homelab_pxe.settings import Settings, load


def _wake(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="homelab-pxe wake", description="Send a Wake-on-LAN magic packet")
    parser.add_argument("mac", help="the machine's MAC address")
    parser.add_argument("--broadcast", help="target address (default: the serving LAN's directed broadcast)")
    parser.add_argument("--port", type=int, default=settings.wol_port)
    args = parser.parse_args(argv)
    broadcast = args.broadcast or Runtime.from_settings(settings).wol_broadcast
    try:
        wake_on_lan(args.mac, broadcast, args.port)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"sent Wake-on-LAN for {args.mac} to {broadcast}:{args.port}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load()
        configure_logging("pxe", settings.log_level)
        if argv[:1] == ["wake"]:
            return _wake(argv[1:], settings)
        if argv:
            print("usage: homelab-pxe [wake <mac> [--broadcast ADDR] [--port N]]", file=sys.stderr)
            return 2
        Runtime.from_settings(settings)  # fail before gunicorn starts when the network cannot be found
    except (SettingsError, NetworkDetectionError) as exc:
        print(f"pxe: {exc}" if isinstance(exc, NetworkDetectionError) else exc, file=sys.stderr)
        return 2

    def factory() -> Flask:
        app = create_app(settings)
        start_servers(app)
        return app

    serve(factory, bind=os.environ.get("HOMELAB_HTTP_BIND", f"0.0.0.0:{settings.http_port}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
