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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homelab_autoinstall.core import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    mac TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    seed_token TEXT NOT NULL,
    generation INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    armed_until REAL,
    nonce TEXT,
    fetched_from TEXT
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
CREATE INDEX IF NOT EXISTS events_by_machine ON events (mac, kind, id);
"""
SCHEMA_VERSION = 2
#: Version 1 kept a password hash per machine and a cluster-wide k3s token for user-data; version 2 has neither
#: (SSH keys only, nodes join with credentials `task up` pushes over SSH) and adds the install window.
MIGRATE_1_TO_2 = """
ALTER TABLE machines DROP COLUMN password_hash;
ALTER TABLE machines ADD COLUMN armed_until REAL;
ALTER TABLE machines ADD COLUMN nonce TEXT;
ALTER TABLE machines ADD COLUMN fetched_from TEXT;
DROP TABLE IF EXISTS cluster;
"""
#: Installer progress events kept per machine (a few hundred per install); state-change events are never pruned.
MAX_INSTALLER_EVENTS = 2000


@dataclass(frozen=True)
class Record:
    """One machine's install state. ``seed_token`` and ``nonce`` are secrets: never log a Record.

    ``armed_until`` (epoch seconds) ends the install window; ``nonce`` is the one handed out with the user-data and
    ``fetched_from`` the address that fetched it.
    """

    mac: str
    name: str
    state: State
    seed_token: str = field(repr=False)
    generation: int
    updated_at: str
    armed_until: float | None = None
    nonce: str | None = field(default=None, repr=False)
    fetched_from: str | None = None

    def armed(self, at: float | None = None) -> bool:
        return self.armed_until is not None and (time.time() if at is None else at) < self.armed_until


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
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == 1:
                db.executescript("BEGIN IMMEDIATE;" + MIGRATE_1_TO_2 + "COMMIT;")
                db.execute("VACUUM")  # the dropped hashes and token must not linger in free pages
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()

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

    def register(self, mac: str, name: str, seed_token: str) -> Event | None:
        """Add a machine as pending (no-op if known; a renamed machine keeps its state). The event if added."""
        with self._write() as db:
            row = db.execute("SELECT name FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is not None:
                if row["name"] != name:
                    db.execute("UPDATE machines SET name = ? WHERE mac = ?", (name, mac))
                return None
            db.execute(
                "INSERT INTO machines (mac, name, state, seed_token, generation, updated_at) VALUES (?, ?, ?, ?, 1, ?)",
                (mac, name, State.PENDING.value, seed_token, now()),
            )
            return self._event(db, mac, name, "registered", None, State.PENDING, "machine added from the site file")

    def get(self, mac: str) -> Record | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
        return _record(row) if row is not None else None

    def all(self) -> list[Record]:
        with self._read() as db:
            return [_record(row) for row in db.execute("SELECT * FROM machines ORDER BY name")]

    def transition(
        self, mac: str, decide: Callable[[Record], State], message: str, **fields: Any
    ) -> tuple[Record, Event | None]:
        """Atomically: read the machine, ``decide`` its next state (it may raise to refuse), store it and its event.

        ``fields`` (columns of ``machines``: ``nonce``, ``fetched_from``, ``armed_until``) are stored with a change
        of state. Returns the record after the change and the event, or None when the state did not change.
        """
        with self._write() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is None:
                raise KeyError(mac)
            record = _record(row)
            new = decide(record)
            if new is record.state:
                return record, None
            self._update(db, mac, {"state": new.value, "updated_at": now(), **fields})
            event = self._event(db, mac, record.name, "state", record.state, new, message)
            return self._get(db, mac), event

    def reset(
        self,
        mac: str,
        seed_token: str,
        message: str,
        *,
        kind: str = "reinstall",
        armed_until: float | None = None,
        next_generation: bool = True,
        detail: dict[str, Any] | None = None,
        decide: Callable[[Record], State] | None = None,
    ) -> tuple[Record, Event]:
        """Back to pending with a fresh seed token and no fetch: a reinstall (the next generation, a new cloud-init
        instance), an install window being armed (``armed_until``), or a window burned by an alarm."""
        with self._write() as db:
            row = db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone()
            if row is None:
                raise KeyError(mac)
            record = _record(row)
            new_state = decide(record) if decide is not None else State.PENDING
            changes = {
                "state": new_state.value, "seed_token": seed_token, "updated_at": now(), "armed_until": armed_until,
                "nonce": None, "fetched_from": None, "generation": record.generation + int(next_generation),
            }  # fmt: skip
            self._update(db, mac, changes)
            event = self._event(db, mac, record.name, kind, record.state, new_state, message, detail)
            return self._get(db, mac), event

    @staticmethod
    def _get(db: sqlite3.Connection, mac: str) -> Record:
        return _record(db.execute("SELECT * FROM machines WHERE mac = ?", (mac,)).fetchone())

    @staticmethod
    def _update(db: sqlite3.Connection, mac: str, changes: dict[str, Any]) -> None:
        columns = ", ".join(f"{name} = ?" for name in changes)  # names come from this module, never from input
        db.execute(f"UPDATE machines SET {columns} WHERE mac = ?", (*changes.values(), mac))  # noqa: S608

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

    def add_event(self, mac: str, name: str, kind: str, message: str, detail: dict[str, Any]) -> Event:
        with self._write() as db:
            return self._event(db, mac, name, kind, None, None, message, detail)

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


def _record(row: sqlite3.Row) -> Record:
    return Record(
        mac=row["mac"],
        name=row["name"],
        state=State(row["state"]),
        seed_token=row["seed_token"],
        generation=int(row["generation"]),
        updated_at=row["updated_at"],
        armed_until=row["armed_until"],
        nonce=row["nonce"],
        fetched_from=row["fetched_from"],
    )


def _event_of(row: sqlite3.Row) -> Event:
    return Event(
        row["id"], row["ts"], row["mac"], row["machine"], row["kind"], row["from_state"], row["to_state"],
        row["message"], json.loads(row["detail"]),
    )  # fmt: skip
