"""Fixtures for the backup tests; the code lives in backup_helpers (a unique module name: every test directory has a
conftest, so tests must not import from ``conftest``)."""

from backup_helpers import servers

__all__ = ["servers"]
