"""Fixtures for the dns tests; the code lives in dns_helpers (a unique module name: every test directory has a
conftest, so tests must not import from ``conftest``)."""

from dns_helpers import bind

__all__ = ["bind"]
