"""``homelab-dns``: the DNS updater (HTTP API under gunicorn; DNS server and sync loop in the same worker)."""

from __future__ import annotations

import atexit
import sys

from flask import Flask

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import SettingsError, load_settings
from homelab_dns.app import create_app
from homelab_dns.settings import Settings


def main() -> None:
    try:
        settings = load_settings(Settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    configure_logging("dns", settings.log_level)

    def factory() -> Flask:
        app = create_app(settings)
        atexit.register(app.extensions["homelab_dns"].stop)  # on SIGTERM: release the Lease for the other replica
        return app

    serve(factory)


if __name__ == "__main__":
    main()
