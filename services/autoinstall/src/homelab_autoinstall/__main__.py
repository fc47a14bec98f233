"""``homelab-autoinstall``: validate settings and the site file, then serve HTTP (default port 8081).

No background threads: every state change happens in a request. The app is built once here so a bad setting or a
bad site file stops the process at once with every problem named, before gunicorn starts.
"""

from __future__ import annotations

import os
import sys

from homelab_autoinstall.api import create_app
from homelab_autoinstall.settings import Settings
from homelab_common.logs import configure_logging
from homelab_common.server import serve
from homelab_common.settings import load_settings_or_exit
from homelab_common.site import SiteError

DEFAULT_BIND = "0.0.0.0:8081"


def main() -> None:
    settings = load_settings_or_exit(Settings)
    configure_logging("autoinstall", settings.log_level)
    try:
        app = create_app(settings)
    except SiteError as exc:
        print(f"autoinstall: invalid site file: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(lambda: app, bind=os.environ.get("HOMELAB_HTTP_BIND", DEFAULT_BIND))


if __name__ == "__main__":
    main()
