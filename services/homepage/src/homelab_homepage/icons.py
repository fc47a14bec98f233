"""Icon names → the SVGs shipped in ``static/icons`` (vendored from npm by scripts/vendor_icons.py).

Accepted forms, so manifests written for gethomepage, Hajimari and Forecastle keep their icons where we can:
``si-<slug>`` (Simple Icons), ``mdi-<name>`` / ``mdi:<name>`` (Material Design Icons), a bare name with or
without ``.png``/``.svg``/``.webp`` (gethomepage's dashboard-icons style: looked up as a Simple Icons slug, then
an MDI name), or an ``http(s)://`` URL (loaded by the browser, never by the server). No icon: the app's name is
tried as a slug, else the card shows its initial.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

ICON_DIR = "static/icons"
_EXTENSIONS = re.compile(r"\.(png|svg|webp|jpg|jpeg)$", re.IGNORECASE)


@dataclass(frozen=True)
class Resolved:
    url: str | None
    problem: str = ""  # why the configured icon could not be used


@cache
def shipped() -> dict[str, dict[str, str]]:
    """``{"si-gitea": {"title", "color", "license"}, "mdi-nas": ...}`` of every shipped icon."""
    text = resources.files("homelab_homepage").joinpath(ICON_DIR, "index.json").read_text()
    index: dict[str, dict[str, str]] = json.loads(text)
    return index


def _url(key: str) -> str:
    kind, _, name = key.partition("-")
    return f"/static/icons/{kind}/{name}.svg"


def _lookup(name: str) -> str | None:
    icons = shipped()
    bare = _EXTENSIONS.sub("", name.strip().lower())
    candidates = [bare] if bare.startswith(("si-", "mdi-")) else []
    if bare.startswith("mdi:"):
        candidates.append("mdi-" + bare[4:])
    candidates += ["si-" + re.sub(r"[^a-z0-9]", "", bare), "mdi-" + bare]
    return next((_url(c) for c in candidates if c in icons), None)


def resolve(icon: str | None, app_name: str) -> Resolved:
    if icon:
        if icon.startswith(("https://", "http://")):
            return Resolved(icon)
        found = _lookup(icon)
        if found:
            return Resolved(found)
        return Resolved(
            _lookup(app_name), f"icon {icon[:60]!r} is not shipped (use si-<slug> or mdi-<name>); showing a fallback"
        )
    return Resolved(_lookup(app_name))
