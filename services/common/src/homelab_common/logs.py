"""JSON logs: one line per event, with the identity of the object it is about.

Call sites pass identity as ``extra`` (``log.info("record created", extra={"object": "apps/web"})``); the
formatter copies every extra field into the line. Fields whose name says they hold a secret are redacted here,
once, so a careless call site cannot leak a token into the logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}
_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|authorization|credential|private_key|tsig_key)")
REDACTED = "[redacted]"


def redact(value: Any, key: str = "") -> Any:
    """Replace values whose key names a secret, recursively through dicts and lists."""
    if key and _SECRET_NAME.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = redact(value, key)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, not the one captured at start (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """StreamHandler.__init__ assigns a stream; ours is always the current sys.stderr."""


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stderr as JSON lines. Idempotent: replaces handlers it installed before."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_homelab", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(service))
    handler._homelab = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
