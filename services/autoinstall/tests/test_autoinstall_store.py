"""The SQLite store on its own: atomic transitions, refusals roll back, installer events are capped per machine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from homelab_autoinstall import store as store_module
from homelab_autoinstall.core import Refused, State
from homelab_autoinstall.store import Store


def test_new_store_is_wal_with_a_schema_version(tmp_path: Path) -> None:
    Store(tmp_path / "s" / "state.sqlite3")
    db = sqlite3.connect(tmp_path / "s" / "state.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_refused_transition_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.register("52:54:00:00:00:01", "node1", "tok", "$6$x$y")

    def refuse(record: object) -> State:
        raise Refused("wrong-state")

    with pytest.raises(Refused):
        store.transition("52:54:00:00:00:01", refuse, "never")
    record = store.get("52:54:00:00:00:01")
    assert record is not None
    assert record.state is State.PENDING
    assert [e.kind for e in store.events()] == ["registered"]
    with pytest.raises(KeyError):
        store.transition("52:54:00:00:00:09", lambda r: State.INSTALLING, "unknown")


def test_register_is_idempotent_and_follows_a_rename(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    assert store.register("52:54:00:00:00:01", "node1", "tok", "$6$x$y") is not None
    assert store.register("52:54:00:00:00:01", "node1-renamed", "other", "$6$z$w") is None
    record = store.get("52:54:00:00:00:01")
    assert record is not None
    assert (record.name, record.seed_token) == ("node1-renamed", "tok")
    assert "tok" not in repr(record)
    assert "$6$" not in repr(record)


def test_installer_events_are_capped_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_INSTALLER_EVENTS", 5)
    store = Store(tmp_path / "state.sqlite3")
    store.register("52:54:00:00:00:01", "node1", "tok", "h")
    store.register("52:54:00:00:00:02", "node2", "tok2", "h")
    for i in range(12):
        store.add_installer_event("52:54:00:00:00:01", "node1", f"event {i}", {})
    store.add_installer_event("52:54:00:00:00:02", "node2", "other machine", {})
    events = store.events(limit=1000)
    node1 = [e.message for e in events if e.machine == "node1" and e.kind == "installer"]
    assert node1 == [f"event {i}" for i in range(7, 12)]
    assert next(e.kind for e in events if e.machine == "node1") == "registered"  # state history is kept
    assert [e.message for e in events if e.machine == "node2" and e.kind == "installer"] == ["other machine"]
