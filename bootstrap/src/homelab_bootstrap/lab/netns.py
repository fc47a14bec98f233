"""Talking to services inside a lab namespace from this process: a thread joins the namespace (setns is per thread).

The lab's services listen only on the lab LAN; tests and ``task up`` ask them over HTTP from a short-lived thread
that entered the boot server's namespace, so nothing of the lab is reachable from the host's own network.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from homelab_bootstrap.lab.commands import LabError

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000


def call_in_namespace(namespace: str, fn: Callable[[], T], timeout: float = 60.0) -> T:
    """Run ``fn`` in a thread that has joined network namespace ``namespace``; its result or its exception."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise LabError(f"setns into {namespace} failed: {os.strerror(errno)} (are you root?)")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise LabError(f"call in namespace {namespace} did not finish within {timeout:.0f}s")
    if error:
        raise error[0]
    return result[0]


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode(errors="replace")


def http(namespace: str, method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> HttpReply:
    """One HTTP request made from inside ``namespace``; any status is returned (connection errors raise)."""

    def request() -> HttpReply:
        req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - lab URLs only
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as reply:  # noqa: S310
                return HttpReply(reply.status, reply.read())
        except urllib.error.HTTPError as exc:
            return HttpReply(exc.code, exc.read())

    return call_in_namespace(namespace, request, timeout=timeout + 5)
