"""The decision for one Secret — fill, rotate, clean up, refuse, or nothing — as a pure function of what is observed.

``decide(secret, now)`` reads the annotations (:mod:`homelab_secrets.spec`), compares them with the data and the
status annotations, and returns a :class:`Decision`: a patch to write (data and annotations; ``None`` deletes), or
a rotation hook to call first. The controller does the I/O; everything that makes a choice is here and is tested
without a cluster.

Ownership, the sealed-secrets way: a Secret is ours when it was made for a generator (no value yet for any key we
generate), carries our (or mittwald's) generated-at mark, or says ``secrets.homelab.dev/managed: "true"``. Anything
else that already holds a value for a key we would generate is refused: nothing is written to it.

A value is known to be ours by its fingerprint (a hash of the Secret's uid, the key and the value, recorded when we
wrote it). A value without a matching fingerprint was set by someone else and is never overwritten or rotated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from homelab_secrets import spec as ann
from homelab_secrets.generate import generate
from homelab_secrets.spec import Spec, SpecError

Action = Literal["ignore", "refuse", "invalid", "write", "hook", "none"]
Generator = Callable[[Spec, tuple[str, ...]], dict[str, bytes]]

PREVIOUS = ".previous"
PENDING = ".pending"


@dataclass(frozen=True)
class Observed:
    """A Secret as the controller sees it: identity, annotations and decoded data."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    annotations: dict[str, str]
    data: dict[str, bytes]
    created: float = 0.0  # unix time

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Patch:
    data: dict[str, bytes | None] = field(default_factory=dict)
    annotations: dict[str, str | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.data or self.annotations)


@dataclass(frozen=True)
class HookCall:
    """Change the password inside the app (``current`` → ``new``) before the Secret is swapped."""

    hook: str
    url: str
    username: str
    current: bytes
    new: bytes


@dataclass
class Decision:
    action: Action
    reason: str = ""
    spec: Spec | None = None
    patch: Patch = field(default_factory=Patch)
    hook: HookCall | None = None
    generated: tuple[str, ...] = ()  # keys filled for the first time
    rotated: tuple[str, ...] = ()  # keys given a new value (the old one kept as <key>.previous)
    user_keys: tuple[str, ...] = ()  # keys holding a value someone else set: left alone
    next_rotation: float | None = None  # unix time
    next_check: float | None = None  # when something becomes due (rotation, end of grace, hook retry)


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def fingerprint(uid: str, key: str, value: bytes) -> str:
    """Proves we wrote ``value``; only ever computed over our own random values, so it reveals nothing guessable."""
    return hashlib.sha256(uid.encode() + b"\0" + key.encode() + b"\0" + value).hexdigest()[:16]


def read_fingerprints(annotations: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in annotations.get(ann.FINGERPRINTS, "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def write_fingerprints(prints: dict[str, str]) -> str:
    return ",".join(f"{k}={prints[k]}" for k in sorted(prints))


def marked(annotations: dict[str, str]) -> bool:
    """Made for a generator: ours, or mittwald's before us."""
    return any(k in annotations for k in (ann.FINGERPRINTS, ann.GENERATED_AT, ann.MITTWALD_GENERATED_AT))


def _rotated_keys(spec: Spec) -> tuple[str, ...]:
    return tuple(k for k in spec.keys if not (spec.type == "basic-auth" and k == "username"))


def _set(patch: Patch, obs: Observed, annotation: str, value: str | None) -> None:
    if obs.annotations.get(annotation) != value:
        patch.annotations[annotation] = value


def decide(obs: Observed, now: float, *, hook_retry: float = 300.0, make: Generator = generate) -> Decision:
    """What to do with ``obs`` at ``now`` (unix time)."""
    if not ann.is_annotated(obs.annotations):
        return Decision("ignore")
    try:
        spec = ann.parse(obs.annotations)
    except SpecError as exc:
        message = str(exc)
        patch = Patch()
        if marked(obs.annotations) or not obs.data:
            _set(patch, obs, ann.STATUS, f"error: {message}"[:1000])
        return Decision("invalid", message, patch=patch)

    ours = spec.managed or marked(obs.annotations) or not any(obs.data.get(k) for k in spec.keys)
    if not ours:
        held = ", ".join(k for k in spec.keys if obs.data.get(k))
        return Decision(
            "refuse",
            f"Secret {obs.key} already holds {held} and was not made for this controller; nothing is written. "
            f'Annotate it {ann.OURS}managed: "true" to hand it over, or delete those keys.',
            spec,
        )

    prints = read_fingerprints(obs.annotations)
    values = {k: obs.data.get(k, b"") for k in spec.keys}
    mine = {k for k, v in values.items() if v and prints.get(k) == fingerprint(obs.uid, k, v)}
    missing = {k for k, v in values.items() if not v}
    user_keys = tuple(sorted(k for k in spec.keys if values[k] and k not in mine))
    decision = Decision("none", spec=spec, user_keys=user_keys)
    patch = decision.patch

    # A rotation through the app's hook is half done: call (or retry) the hook before anything else.
    pending_key = spec.password_key + PENDING
    if spec.hook and obs.data.get(pending_key):
        failed = parse_time(obs.annotations.get(ann.HOOK_FAILED_AT))
        if failed is not None and now < failed + hook_retry:
            decision.next_check = failed + hook_retry
            return decision
        username = obs.data.get(spec.hook_username_key, b"").decode(errors="replace")
        decision.action = "hook"
        decision.hook = HookCall(spec.hook, spec.hook_url, username, obs.data[spec.password_key], obs.data[pending_key])
        return decision

    grouped = spec.type != "string"
    if grouped and missing and (set(spec.keys) - missing) - mine:
        present = ", ".join(sorted(set(spec.keys) - missing))
        message = (
            f"type {spec.type} writes {', '.join(spec.keys)} together, but {present} holds a value this controller "
            "did not write; set all of them yourself, or delete them all to have them generated"
        )
        _set(patch, obs, ann.STATUS, f"error: {message}")
        decision.action, decision.reason = "invalid", message
        return decision

    # What to (re)generate now: missing keys are filled; regenerate and due rotations replace our own values.
    fill = tuple(spec.keys) if grouped and missing else tuple(sorted(missing))
    regenerate: set[str] = set()
    if spec.regenerate_all:
        regenerate = set(spec.keys)
    elif spec.regenerate_keys:
        regenerate = set(spec.regenerate_keys)
    if spec.regenerate_token and spec.regenerate_token != obs.annotations.get(ann.REGENERATED_TOKEN):
        regenerate = set(spec.keys)
        _set(patch, obs, ann.REGENERATED_TOKEN, spec.regenerate_token)
    if (
        spec.mittwald
        and (ann.MITTWALD + "regenerate") in obs.annotations
        and ann.OURS + "regenerate" not in obs.annotations
    ):
        patch.annotations[ann.MITTWALD + "regenerate"] = None  # one-shot, as in mittwald

    last = parse_time(obs.annotations.get(ann.ROTATED_AT)) or parse_time(obs.annotations.get(ann.GENERATED_AT))
    due = last + spec.rotate_every if (spec.rotate_every is not None and last is not None) else None
    # A rotation asked for through the API: honoured once, and the request (ours, never in git) removed with it.
    requested = ann.ROTATE_REQUESTED in obs.annotations
    if requested:
        patch.annotations[ann.ROTATE_REQUESTED] = None
    if not fill and ((due is not None and now >= due) or requested):
        regenerate |= {k for k in spec.keys if k in mine}
    if grouped and regenerate:
        regenerate = set(spec.keys)
    rotate = tuple(sorted(k for k in regenerate - set(fill) if values[k]))

    new_prints = dict(prints)
    if fill or rotate:
        fresh = make(spec, tuple(sorted(set(fill) | set(rotate))))
        if rotate and spec.hook:
            # Phase one of a hooked rotation: park the new value beside the current one; the app is changed
            # next, and only then is the value swapped in (see the "hook" branch above).
            patch.data[pending_key] = fresh[spec.password_key]
            _set(patch, obs, ann.PENDING_SINCE, rfc3339(now))
            _set(patch, obs, ann.HOOK_FAILED_AT, None)
            fresh = {k: v for k, v in fresh.items() if k in fill}
            rotate = ()
        for key in fill:
            patch.data[key] = fresh[key]
            new_prints[key] = fingerprint(obs.uid, key, fresh[key])
        for key in rotate:
            patch.data[key] = fresh[key]
            new_prints[key] = fingerprint(obs.uid, key, fresh[key])
            if key in _rotated_keys(spec):
                patch.data[key + PREVIOUS] = values[key]
        decision.generated = tuple(k for k in fill)
        decision.rotated = tuple(k for k in rotate if k in _rotated_keys(spec))
    if decision.rotated:
        last = now
        _set(patch, obs, ann.ROTATED_AT, rfc3339(now))
        _set(patch, obs, ann.PREVIOUS_UNTIL, rfc3339(now + spec.grace))
    elif fill and last is None:
        last = now
    if fill:
        _set(patch, obs, ann.GENERATED_AT, obs.annotations.get(ann.GENERATED_AT) or rfc3339(now))
        if spec.mittwald:
            _set(patch, obs, ann.MITTWALD_SECURE, "yes")
            _set(patch, obs, ann.MITTWALD_GENERATED_AT, rfc3339(now))
    _set(patch, obs, ann.FINGERPRINTS, write_fingerprints(new_prints) if new_prints else None)

    # The grace window: the previous values go when it ends.
    until = parse_time(obs.annotations.get(ann.PREVIOUS_UNTIL)) if not decision.rotated else now + spec.grace
    if until is not None and now >= until:
        for key in obs.data:
            if key.endswith(PREVIOUS):
                patch.data[key] = None
        _set(patch, obs, ann.PREVIOUS_UNTIL, None)
        until = None

    _set(patch, obs, ann.STATUS, "ok")
    if spec.rotate_every is not None and last is not None:
        decision.next_rotation = last + spec.rotate_every
    if not spec.hook and pending_key in obs.data:  # the hook was removed mid-rotation: drop the parked value
        patch.data[pending_key] = None
        _set(patch, obs, ann.PENDING_SINCE, None)
    checks = [t for t in (decision.next_rotation, until) if t is not None]
    decision.next_check = min(checks) if checks else None
    if patch:
        decision.action = "write"
    return decision


def finish_hooked_rotation(obs: Observed, spec: Spec, now: float) -> Patch:
    """The app took the new password: swap it in, keep the old one for the grace window."""
    key = spec.password_key
    new, old = obs.data[key + PENDING], obs.data[key]
    prints = read_fingerprints(obs.annotations)
    prints[key] = fingerprint(obs.uid, key, new)
    patch = Patch(data={key: new, key + PREVIOUS: old, key + PENDING: None})
    for name, value in (
        (ann.ROTATED_AT, rfc3339(now)),
        (ann.PREVIOUS_UNTIL, rfc3339(now + spec.grace)),
        (ann.FINGERPRINTS, write_fingerprints(prints)),
        (ann.PENDING_SINCE, None),
        (ann.HOOK_FAILED_AT, None),
        (ann.STATUS, "ok"),
    ):
        _set(patch, obs, name, value)
    return patch


def hook_failed(obs: Observed, message: str, now: float) -> Patch:
    """The app refused or could not be reached: the current value stays; retry after the hook delay."""
    patch = Patch()
    _set(patch, obs, ann.HOOK_FAILED_AT, rfc3339(now))
    _set(patch, obs, ann.STATUS, f"error: rotation hook failed: {message}"[:1000])
    return patch


@dataclass(frozen=True)
class View:
    """What the API shows about a Secret: never a value."""

    state: Literal["ok", "pending", "error", "refused", "unfilled"]
    type: str
    keys: tuple[str, ...]
    user_keys: tuple[str, ...]
    generated_at: float | None
    rotated_at: float | None
    next_rotation: float | None
    last_error: str
    rotatable: bool


def describe(obs: Observed) -> View:
    """The Secret's state from its annotations alone, so every replica can answer (not only the leader)."""
    status = obs.annotations.get(ann.STATUS, "")
    error = status[len("error: ") :] if status.startswith("error: ") else ""
    generated = parse_time(obs.annotations.get(ann.GENERATED_AT))
    rotated = parse_time(obs.annotations.get(ann.ROTATED_AT))
    try:
        spec = ann.parse(obs.annotations)
    except SpecError as exc:
        return View("error", "", (), (), generated, rotated, None, str(exc), False)
    ours = spec.managed or marked(obs.annotations) or not any(obs.data.get(k) for k in spec.keys)
    prints = read_fingerprints(obs.annotations)
    mine = {k for k in spec.keys if obs.data.get(k) and prints.get(k) == fingerprint(obs.uid, k, obs.data[k])}
    user = tuple(sorted(k for k in spec.keys if obs.data.get(k) and k not in mine))
    last = rotated or generated
    upcoming = last + spec.rotate_every if (spec.rotate_every is not None and last is not None) else None
    if not ours:
        state: Literal["ok", "pending", "error", "refused", "unfilled"] = "refused"
        error = error or "holds values it was not made for this controller; not written"
    elif error:
        state = "error"
    elif obs.data.get(spec.password_key + PENDING):
        state = "pending"
    elif any(not obs.data.get(k) for k in spec.keys):
        state = "unfilled"
    else:
        state = "ok"
    return View(state, spec.type, spec.keys, user, generated, rotated, upcoming, error, ours and bool(mine))
