"""``homelab-backup``: the controller and its HTTP API (under gunicorn); ``homelab-backup run ...``: a Job's work."""

from __future__ import annotations

import atexit
import sys
from typing import TYPE_CHECKING

from homelab_backup.cli import run
from homelab_backup.settings import Settings
from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import load_settings_or_exit

if TYPE_CHECKING:
    from flask import Flask


def main() -> None:
    settings = load_settings_or_exit(Settings)
    configure_logging("backup", settings.log_level)
    if sys.argv[1:2] == ["run"]:  # a Job: no Kubernetes client, no web server (a quicker start)
        raise SystemExit(run(sys.argv[2:], settings))
    from homelab_backup.app import create_app

    def factory() -> Flask:
        app = create_app(settings)
        atexit.register(app.extensions["homelab_backup"].stop)  # on SIGTERM: release the Lease for the other replica
        return app

    serve(factory)


if __name__ == "__main__":
    main()
