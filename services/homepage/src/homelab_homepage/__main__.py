"""``homelab-homepage``: serve the dashboard under gunicorn (one worker, threads; see homelab_common.server)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import SettingsError, load_settings
from homelab_homepage.settings import Settings

if TYPE_CHECKING:
    from flask import Flask


def main() -> None:
    try:
        settings = load_settings(Settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    configure_logging("homepage", settings.log_level)

    def factory() -> Flask:
        from homelab_homepage.app import create_app  # in the worker: the master never loads the web stack

        return create_app(settings)

    serve(factory, service="homepage")


if __name__ == "__main__":
    main()
