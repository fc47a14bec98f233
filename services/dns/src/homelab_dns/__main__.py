"""``homelab-dns``: the DNS updater (HTTP API under gunicorn; DNS server and sync loop in the same worker)."""

from __future__ import annotations

import sys

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
    serve(lambda: create_app(settings))


if __name__ == "__main__":
    main()
