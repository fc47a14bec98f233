"""``homelab-homepage``: serve the dashboard under gunicorn (one worker, threads; see homelab_common.server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import load_settings_or_exit
from homelab_homepage.settings import Settings

if TYPE_CHECKING:
    from flask import Flask


def main() -> None:
    settings = load_settings_or_exit(Settings)
    configure_logging("homepage", settings.log_level)

    def factory() -> Flask:
        from homelab_homepage.app import create_app  # in the worker: the master never loads the web stack

        return create_app(settings)

    serve(factory, service="homepage")


if __name__ == "__main__":
    main()
