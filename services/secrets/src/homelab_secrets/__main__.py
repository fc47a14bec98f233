"""``homelab-secrets``: the Secret generator and rotator (HTTP API under gunicorn; the controller in the worker)."""

from __future__ import annotations

import atexit

from flask import Flask

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import load_settings_or_exit
from homelab_secrets.app import create_app
from homelab_secrets.settings import Settings


def main() -> None:
    settings = load_settings_or_exit(Settings)
    configure_logging("secrets", settings.log_level)

    def factory() -> Flask:
        app = create_app(settings)
        atexit.register(app.extensions["homelab_secrets"].stop)  # on SIGTERM: release the Lease for the other replica
        return app

    serve(factory, "secrets")


if __name__ == "__main__":
    main()
