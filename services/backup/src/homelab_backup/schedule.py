"""Cron schedules with a deterministic per-volume offset (k8up's ``@daily-random``, but stable across restarts).

A schedule is five cron fields (minute hour day-of-month month day-of-week; ``*``, numbers, ranges, lists and
``/step``) or ``@hourly``/``@daily``/``@weekly``/``@monthly``. Each volume's runs start at the schedule plus an
offset in ``[0, jitter)`` derived from a hash of its name, so a hundred volumes do not hit the NAS at 00:00, and
a volume's time does not move when the controller restarts or another volume appears.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


class ScheduleError(ValueError):
    pass


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ScheduleError(f"step {step_text!r} must be at least 1")
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = int(a), int(b)
        else:
            first = int(body)
            last = high if step_text else first
        if not (low <= first <= last <= high):
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday, as cron

    @classmethod
    def parse(cls, text: str) -> Cron:
        expanded = MACROS.get(text.strip(), text)
        fields = expanded.split()
        if len(fields) != 5:
            raise ScheduleError(f"{text!r}: five fields (minute hour day month weekday) or @hourly/@daily/@weekly")
        try:
            parsed = [_field(f, low, high) for f, (low, high) in zip(fields, _RANGES, strict=True)]
        except ValueError as exc:
            raise ScheduleError(f"{text!r}: {exc}") from None
        return cls(text, *parsed)

    def matches(self, when: datetime) -> bool:
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.day in self.days
            and when.month in self.months
            and (when.isoweekday() % 7) in self.weekdays
        )

    def previous(self, before: datetime) -> datetime:
        """The latest time <= ``before`` (to the minute) this schedule fires."""
        when = before.astimezone(UTC).replace(second=0, microsecond=0)
        for _ in range(366 * 24 * 60):
            if self.matches(when):
                return when
            when -= timedelta(minutes=1)
        raise ScheduleError(f"{self.text!r} never fires")

    def next(self, after: datetime) -> datetime:
        """The first time > ``after`` this schedule fires."""
        when = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches(when):
                return when
            when += timedelta(minutes=1)
        raise ScheduleError(f"{self.text!r} never fires")


def offset(key: str, jitter: timedelta) -> timedelta:
    """A stable offset in [0, jitter) for ``key`` (``namespace/pvc``)."""
    seconds = int(jitter.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % seconds)


def due(cron: Cron, key: str, jitter: timedelta, now: datetime, last_run: datetime | None) -> datetime | None:
    """The slot (schedule + this key's offset) that should have run by ``now`` and has not, else None."""
    shift = offset(key, jitter)
    slot = cron.previous(now - shift) + shift
    if last_run is not None and last_run >= slot:
        return None
    return slot


def next_slot(cron: Cron, key: str, jitter: timedelta, now: datetime) -> datetime:
    shift = offset(key, jitter)
    return cron.next(now - shift) + shift
