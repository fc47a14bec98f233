"""Alertmanager → ntfy: the webhook payload Alertmanager posts, turned into an ntfy message and published.

Alertmanager has no ntfy receiver; instead of one more container (a webhook bridge), the homepage, which runs
anyway, takes Alertmanager's webhook (``POST /api/v1/alerts/ntfy``) and publishes to ntfy (self-hosted or ntfy.sh)
with ntfy's "publish as JSON" API: a POST of ``{"topic", "title", "message", "priority", "tags", "click",
"actions"}`` to the server's root URL, with ``Authorization: Bearer <token>`` when the topic is protected.

``to_ntfy`` is the pure conversion (one notification per Alertmanager group); ``publish`` sends it.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

#: ntfy priorities (1 min .. 5 max): a page rings, a ticket shows quietly, a resolution is silent.
PRIORITY = {"critical": 5, "warning": 3, "info": 2}
TAGS = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}
#: ntfy shows at most three action buttons.
MAX_ACTIONS = 3
#: ntfy turns a message above 4096 bytes into an attachment: keep the text below it.
MAX_MESSAGE = 4000


class Alert(BaseModel):
    """One alert of Alertmanager's webhook payload (version 4); unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generatorURL: str = ""  # noqa: N815 (Alertmanager's field name)


class Notification(BaseModel):
    """Alertmanager's webhook payload: one group of alerts routed to one receiver."""

    model_config = ConfigDict(extra="ignore")
    version: str = "4"
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(min_length=1, max_length=1000)
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815


class NtfyAction(BaseModel):
    """An action button (docs.ntfy.sh/publish, "Action buttons"); we only open links (``view``)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["view", "http", "broadcast", "copy"]
    label: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")


class NtfyMessage(BaseModel):
    """ntfy's publish-as-JSON body as documented (docs.ntfy.sh/publish, "Publish as JSON"): only topic is required.

    Every message we send is validated against it, and the tests validate what a recording ntfy received.
    """

    model_config = ConfigDict(extra="forbid")
    topic: str = Field(pattern=r"^[-_A-Za-z0-9]{1,64}$")
    message: str | None = None
    title: str | None = None
    tags: list[str] | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    actions: list[NtfyAction] | None = Field(default=None, max_length=MAX_ACTIONS)
    click: str | None = None
    attach: str | None = None
    filename: str | None = None
    markdown: bool | None = None
    icon: str | None = None
    delay: str | None = None
    email: str | None = None
    call: str | None = None


class Published(BaseModel):
    """What the homepage sent to ntfy (the message's topic, title and priority)."""

    topic: str
    title: str
    priority: int


def _line(alert: Alert) -> str:
    what = alert.annotations.get("summary") or alert.labels.get("alertname", "alert")
    where = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in {"alertname", "severity"})
    mark = "RESOLVED " if alert.status == "resolved" else ""
    return f"- {mark}{what}" + (f" ({where})" if where else "")


def to_ntfy(notification: Notification, topic: str) -> dict[str, Any]:
    """The ntfy JSON message for one Alertmanager notification (``topic`` is the only required field)."""
    firing = [a for a in notification.alerts if a.status == "firing"]
    severity = notification.commonLabels.get("severity", "")
    if not severity:  # a group mixing severities: the most urgent one decides
        severity = min((a.labels.get("severity", "info") for a in firing or notification.alerts), key=_rank)
    name = notification.groupLabels.get("alertname") or notification.commonLabels.get("alertname", "alerts")
    if notification.status == "resolved":
        title = f"[RESOLVED] {name}"
        priority, tags = 2, ["white_check_mark"]
    else:
        title = f"[FIRING:{len(firing)}] {name} ({severity})"
        priority, tags = PRIORITY.get(severity, 3), [TAGS.get(severity, "warning")]
    message = "\n".join(_line(a) for a in notification.alerts)
    if len(message.encode()) > MAX_MESSAGE:
        message = message.encode()[: MAX_MESSAGE - 4].decode(errors="ignore") + "\n..."
    runbooks = sorted({a.annotations["runbook_url"] for a in notification.alerts if a.annotations.get("runbook_url")})
    actions = [{"action": "view", "label": "Runbook", "url": url} for url in runbooks[: MAX_ACTIONS - 1]]
    if notification.externalURL:
        actions.append({"action": "view", "label": "Alertmanager", "url": notification.externalURL})
    body = NtfyMessage(
        topic=topic,
        title=title,
        message=message,
        priority=priority,
        tags=tags,
        click=runbooks[0] if runbooks else None,
        actions=[NtfyAction.model_validate(a) for a in actions] or None,
    )
    return body.model_dump(exclude_none=True)


def _rank(severity: str) -> int:
    return {"critical": 0, "warning": 1}.get(severity, 2)


class NtfyError(Exception):
    """ntfy refused the message or could not be reached; Alertmanager retries the notification."""


def publish(url: str, message: dict[str, Any], token: str | None, timeout: float = 10.0) -> None:
    """POST the JSON message to the ntfy server's root URL (not the topic's: that would publish the JSON as text)."""
    root = url.rstrip("/") + "/"
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(root, json.dumps(message).encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the configured ntfy URL)
            response.read()
    except urllib.error.HTTPError as exc:
        raise NtfyError(f"ntfy answered {exc.code}: {exc.read()[:200].decode(errors='replace')}") from None
    except OSError as exc:
        raise NtfyError(f"ntfy could not be reached at {root}: {exc}") from None
