"""``homelab-dns``: the DNS updater (HTTP API under gunicorn; DNS server and sync loop in the same worker)."""

from __future__ import annotations

from flask import Flask

from homelab_common.logs import configure_logging
from homelab_common.server import on_stop, serve
from homelab_common.settings import load_settings_or_exit
from homelab_dns.app import create_app
from homelab_dns.settings import Settings


def main() -> None:
    settings = load_settings_or_exit(Settings)
    configure_logging("dns", settings.log_level)

    def factory() -> Flask:
        app = create_app(settings)
        on_stop(app.extensions["homelab_dns"].stop)  # on SIGTERM: release the Lease for the other replica
        return app

    serve(factory)


if __name__ == "__main__":
    main()
