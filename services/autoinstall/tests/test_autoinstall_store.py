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
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_version_1_state_file_loses_its_password_hashes_and_k3s_token_and_keeps_its_machines(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE machines (mac TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, seed_token TEXT NOT"
        " NULL, password_hash TEXT NOT NULL, generation INTEGER NOT NULL, updated_at TEXT NOT NULL);"
        "CREATE TABLE cluster (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO machines VALUES ('52:54:00:00:00:01', 'node1', 'installed', 'tok', '$6$salt$hash', 2, 't');"
        "INSERT INTO cluster VALUES ('k3s-token', 'cafe');"
        "PRAGMA user_version = 1;"
    )
    db.close()
    store = Store(path)
    record = store.get("52:54:00:00:00:01")
    assert record is not None
    assert (record.state, record.generation, record.armed_until) == (State.INSTALLED, 2, None)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "password_hash" not in [row[1] for row in db.execute("PRAGMA table_info(machines)")]
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'cluster'").fetchone() is None
    db.close()
    assert not [p.name for p in tmp_path.iterdir() if b"$6$salt$hash" in p.read_bytes() or b"cafe" in p.read_bytes()]


def test_refused_transition_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.register("52:54:00:00:00:01", "node1", "tok")

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
    assert store.register("52:54:00:00:00:01", "node1", "tok") is not None
    assert store.register("52:54:00:00:00:01", "node1-renamed", "other") is None
    record = store.get("52:54:00:00:00:01")
    assert record is not None
    assert (record.name, record.seed_token) == ("node1-renamed", "tok")
    assert "tok" not in repr(record)


def test_installer_events_are_capped_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_INSTALLER_EVENTS", 5)
    store = Store(tmp_path / "state.sqlite3")
    store.register("52:54:00:00:00:01", "node1", "tok")
    store.register("52:54:00:00:00:02", "node2", "tok2")
    for i in range(12):
        store.add_installer_event("52:54:00:00:00:01", "node1", f"event {i}", {})
    store.add_installer_event("52:54:00:00:00:02", "node2", "other machine", {})
    events = store.events(limit=1000)
    node1 = [e.message for e in events if e.machine == "node1" and e.kind == "installer"]
    assert node1 == [f"event {i}" for i in range(7, 12)]
    assert next(e.kind for e in events if e.machine == "node1") == "registered"  # state history is kept
    assert [e.message for e in events if e.machine == "node2" and e.kind == "installer"] == ["other machine"]
