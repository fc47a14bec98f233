"""``homelab-homepage``: serve the dashboard under gunicorn (one worker, threads; see homelab_common.server)."""

from __future__ import annotations

import sys

from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import SettingsError, load_settings
from homelab_homepage.settings import Settings


def main() -> None:
    try:
        settings = load_settings(Settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    configure_logging("homepage", settings.log_level)
    from homelab_homepage.app import create_app

    serve(lambda: create_app(settings))


if __name__ == "__main__":
    main()
