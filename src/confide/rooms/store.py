"""Meetings kept across restarts in one SQLite file (`confide serve --store`).

It holds what docs/design.md, 'What the server stores', allows and no more: the meeting
id, the public join key, the host's public key, when the meeting was made and last used
(whole seconds), and what the host signed that must outlive a restart (the policy action
in force, and the random identity keys of people removed). Nothing about participants:
no names, no addresses. This is the rooms package's only I/O; the web app calls it after
the Directory (pure state) changes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .meeting import Meeting

LAST_USE_SAVE_INTERVAL = 60.0
"""Seconds between writes of one meeting's last-use time."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meetings (
    id TEXT PRIMARY KEY NOT NULL,
    join_key BLOB,
    host_key BLOB,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    signed_state TEXT
) STRICT
"""
ADD_SIGNED_STATE = "ALTER TABLE meetings ADD COLUMN signed_state TEXT"
"""For a store written before the column existed."""


@dataclass(frozen=True)
class StoredMeeting:
    id: str
    join_key: bytes | None
    """The Ed25519 public join key; None while the creator has not registered it."""
    host_key: bytes | None
    """The host's Ed25519 public key, which signs host actions."""
    created_at: int
    last_used_at: int
    """Unix time in whole seconds."""
    signed_state: str | None = None
    """What the host signed that outlives a restart: the policy in force and the
    identity keys removed (rooms.moderation `signed_state`)."""


class MeetingStore:
    """The file is opened by `open` (which returns what it holds) and closed by
    `close`; `now` is passed in, as everywhere else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._written: dict[str, tuple[float, int]] = {}
        """Per meeting: when it was last written, and the last-use time written."""

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the meeting store is not open")
        return self._connection

    def open(self) -> list[StoredMeeting]:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # autocommit: every statement is its own transaction, on disk when it returns.
        self._connection = sqlite3.connect(self.path, isolation_level=None)
        # Deleted rows are overwritten with zeros, so an erased meeting does not
        # linger in the file's free pages.
        self._connection.execute("PRAGMA secure_delete = ON")
        self._connection.execute(SCHEMA)
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(meetings)")}
        if "signed_state" not in columns:
            self._connection.execute(ADD_SIGNED_STATE)
        rows = self._connection.execute(
            "SELECT id, join_key, host_key, created_at, last_used_at, signed_state FROM meetings"
            " ORDER BY created_at"
        )
        meetings = [StoredMeeting(*row) for row in rows]
        self._written = {m.id: (float("-inf"), m.last_used_at) for m in meetings}
        return meetings

    def save(self, meeting: Meeting, now: float) -> None:
        """Write a meeting at once (made, or its join key registered)."""
        # A meeting with people in it counts as used now: after a restart its
        # lifetime runs from when it was last seen occupied.
        last_used_at = int(now if meeting.participants else meeting.last_used_at)
        self.connection.execute(
            "INSERT INTO meetings (id, join_key, host_key, created_at, last_used_at, signed_state)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET join_key = excluded.join_key,"
            " host_key = excluded.host_key, last_used_at = excluded.last_used_at,"
            " signed_state = excluded.signed_state",
            (meeting.id, meeting.join_key, meeting.host_key, int(meeting.created_at),
             last_used_at, meeting.moderation.signed_state()),
        )
        self._written[meeting.id] = (now, last_used_at)

    def save_last_uses(self, meetings: Iterable[Meeting], now: float, throttle: bool = True) -> int:
        """Write the meetings used since they were last written, each at most once per
        LAST_USE_SAVE_INTERVAL unless `throttle` is off (at shutdown). Returns how many."""
        count = 0
        for meeting in meetings:
            last_used_at = int(now if meeting.participants else meeting.last_used_at)
            written = self._written.get(meeting.id)
            if written is not None:
                written_at, written_last_used_at = written
                if last_used_at <= written_last_used_at:
                    continue
                if throttle and now - written_at < LAST_USE_SAVE_INTERVAL:
                    continue
            self.save(meeting, now)
            count += 1
        return count

    def reachable(self) -> bool:
        """The file is open, still at its path, and answers a query: for /readyz.
        (A store file deleted or replaced under a running server would lose what
        is written from then on.)"""
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1 FROM meetings LIMIT 1").fetchall()
            return self.path.exists()
        except sqlite3.Error:
            return False

    def delete(self, meeting_ids: Iterable[str]) -> None:
        """Erase meetings (expired): the rows, and their bytes in the file."""
        for meeting_id in meeting_ids:
            self.connection.execute("DELETE FROM meetings WHERE id = ?", (meeting_id,))
            self._written.pop(meeting_id, None)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
