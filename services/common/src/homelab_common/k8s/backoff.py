"""Exponential backoff with jitter, shared by every retry loop in this package."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays that double per consecutive failure up to ``maximum``, each randomised into [½d, d].

    Jitter keeps replicas and services that failed together (an API server restart) from retrying in
    lockstep; the lower bound of ½d keeps a delay from collapsing to zero.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.failures = 0

    def next(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0
