"""The adapter to the autoinstall service: ``GET /api/v1/boot/{mac}`` over HTTP (stdlib only)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Protocol

from pydantic import ValidationError

from homelab_pxe.bootscript import BootInfo


class MachineUnknown(Exception):
    """The MAC is not in autoinstall's inventory (its 404)."""


class AutoinstallUnavailable(Exception):
    """autoinstall could not be asked or gave an answer we cannot use; the message says which."""


class BootInfoSource(Protocol):
    def boot_info(self, mac: str) -> BootInfo: ...


class AutoinstallClient:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def boot_info(self, mac: str) -> BootInfo:
        url = f"{self.base_url}/api/v1/boot/{mac}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) setting
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(65536)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise MachineUnknown(mac) from None
            raise AutoinstallUnavailable(f"autoinstall answered {exc.code}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AutoinstallUnavailable(f"autoinstall unreachable: {reason}") from None
        try:
            return BootInfo.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise AutoinstallUnavailable(f"autoinstall's answer is not usable: {exc}") from None
