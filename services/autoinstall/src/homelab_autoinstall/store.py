"""Install state in SQLite: one file, WAL, every change and its event written in one transaction.

SQLite because the controller has no database server and the state is tiny; WAL so readers (the API, pxe's boot
decisions) never wait for a writer; ``BEGIN IMMEDIATE`` so two concurrent requests for the same machine (two
threads, or two processes on the same file) cannot both move it: the second sees the first's result. A fresh
connection per operation keeps it thread-safe without a pool; connecting costs microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from homelab_autoinstall.core import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    mac TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    seed_token TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    mac TEXT NOT NULL,
    machine TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    message TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_machine ON events (mac, kind, id);
PRAGMA user_version = 1;
"""
#: Installer progress events kept per machine (a few hundred per install); state-change events are never pruned.
MAX_INSTALLER_EVENTS = 2000


@dataclass(frozen=True)
class Record:
    """One machine's install state. ``seed_token`` and ``password_hash`` are secrets: never log a Record."""

    mac: str
    name: str
    state: State
    seed_token: str = field(repr=False)
    password_hash: str = field(repr=False)
    generation: int
    updated_at: str


@dataclass(frozen=True)
class Event:
    id: int
    ts: str
    mac: str
    machine: str
    kind: str
    from_state: str | None
    to_state: str | None
    message: str
    detail: dict[str, Any]


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)  # secrets inside; SQLite gives -wal/-shm the same mode
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    # -- machines

    def register(self, mac: str, name: str, seed_token: str, password_hash: str) -> Event | None:
        """Add a machine as pending (no-op if known; a renamed machine keeps its state). The event if added."""
        with self._write() as db:
            row = db.execute("SELECT name FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is not None:
                if row["name"] != name:
                    db.execute("UPDATE machines SET name = ? WHERE mac = ?", (name, mac))
                return None
            db.execute(
                "INSERT INTO machines VALUES (?, ?, ?, ?, ?, 1, ?)",
                (mac, name, State.PENDING.value, seed_token, password_hash, now()),
            )
            return self._event(db, mac, name, "registered", None, State.PENDING, "machine added from the site file")

    def get(self, mac: str) -> Record | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
        return _record(row) if row is not None else None

    def all(self) -> list[Record]:
        with self._read() as db:
            return [_record(row) for row in db.execute("SELECT * FROM machines ORDER BY name")]

    def transition(self, mac: str, decide: Callable[[Record], State], message: str) -> tuple[Record, Event | None]:
        """Atomically: read the machine, ``decide`` its next state (it may raise to refuse), store it and its event.

        Returns the record after the change and the event, or None when the state did not change.
        """
        with self._write() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is None:
                raise KeyError(mac)
            record = _record(row)
            new = decide(record)
            if new is record.state:
                return record, None
            stamp = now()
            db.execute("UPDATE machines SET state = ?, updated_at = ? WHERE mac = ?", (new.value, stamp, mac))
            event = self._event(db, mac, record.name, "state", record.state, new, message)
            return replace(record, state=new, updated_at=stamp), event

    def reset(self, mac: str, seed_token: str, password_hash: str, message: str) -> tuple[Record, Event]:
        """Back to pending with fresh secrets and the next generation (a new cloud-init instance)."""
        with self._write() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is None:
                raise KeyError(mac)
            record = _record(row)
            stamp = now()
            db.execute(
                "UPDATE machines SET state = ?, seed_token = ?, password_hash = ?, generation = generation + 1,"
                " updated_at = ? WHERE mac = ?",
                (State.PENDING.value, seed_token, password_hash, stamp, mac),
            )
            event = self._event(db, mac, record.name, "reinstall", record.state, State.PENDING, message)
            new = replace(record, state=State.PENDING, generation=record.generation + 1, updated_at=stamp)
            return replace(new, seed_token=seed_token, password_hash=password_hash), event

    def counts(self) -> dict[State, int]:
        with self._read() as db:
            rows = db.execute("SELECT state, count(*) AS n FROM machines GROUP BY state").fetchall()
        found = {State(row["state"]): int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in State}

    # -- events

    def add_installer_event(self, mac: str, name: str, message: str, detail: dict[str, Any]) -> Event:
        """Store one installer event, dropping that machine's oldest beyond MAX_INSTALLER_EVENTS."""
        with self._write() as db:
            event = self._event(db, mac, name, "installer", None, None, message, detail)
            db.execute(
                "DELETE FROM events WHERE mac = ? AND kind = 'installer' AND id <= ("
                " SELECT id FROM events WHERE mac = ? AND kind = 'installer' ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (mac, mac, MAX_INSTALLER_EVENTS),
            )
            return event

    def events(self, since: int = 0, limit: int = 100, mac: str | None = None) -> list[Event]:
        query = "SELECT * FROM events WHERE id > ? AND (? IS NULL OR mac = ?) ORDER BY id LIMIT ?"
        with self._read() as db:
            return [_event_of(row) for row in db.execute(query, (since, mac, mac, limit))]

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        mac: str,
        name: str,
        kind: str,
        from_state: State | None,
        to_state: State | None,
        message: str,
        detail: dict[str, Any] | None = None,
    ) -> Event:
        stamp = now()
        values = (
            stamp, mac, name, kind,
            from_state.value if from_state else None, to_state.value if to_state else None,
            message, json.dumps(detail or {}),
        )  # fmt: skip
        cursor = db.execute(
            "INSERT INTO events (ts, mac, machine, kind, from_state, to_state, message, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        assert cursor.lastrowid is not None
        return Event(cursor.lastrowid, stamp, mac, name, kind, values[4], values[5], message, detail or {})

    # -- cluster-wide secrets

    def cluster_secret(self, key: str, make: Callable[[], str]) -> str:
        """The stored value of ``key``, created once with ``make()`` (atomically, even across processes)."""
        with self._write() as db:
            row = db.execute("SELECT value FROM cluster WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row["value"])
            value = make()
            db.execute("INSERT INTO cluster VALUES (?, ?)", (key, value))
            return value


def _record(row: sqlite3.Row) -> Record:
    return Record(
        mac=row["mac"],
        name=row["name"],
        state=State(row["state"]),
        seed_token=row["seed_token"],
        password_hash=row["password_hash"],
        generation=int(row["generation"]),
        updated_at=row["updated_at"],
    )


def _event_of(row: sqlite3.Row) -> Event:
    return Event(
        row["id"], row["ts"], row["mac"], row["machine"], row["kind"], row["from_state"], row["to_state"],
        row["message"], json.loads(row["detail"]),
    )  # fmt: skip
