"""The suggestion inbox: every suggestion the bridge received, its state, and people's decisions.

One SQLite database (WAL, like the embedded store) shared by the bridge's worker, the
`pipeline suggestions` command and the viewer, which may all run at once. Four tables:

- `suggestions`: one row per suggestion uid, with its state and the reason for it;
- `decisions`: who decided what, when and why (approve, reject), kept for provenance;
- `feedback`: the state changes still to be sent on the bridge's `status` port, marked sent
  only after the worker made its outputs durable (so a crash re-sends, never loses, them);
- `servers`: when each queue server last answered, so that a listing made while it is gone
  says how old the states it shows are.

Standard library only: the CLI and the viewer open it without the queue-server client.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import PipelinesError

#: the states of CONTRACTS.md, plus `noted` for a suggestion with nothing to queue (a stop)
STATES = (
    "pending",
    "approved",
    "held",
    "rejected",
    "submitted",
    "running",
    "completed",
    "failed",
    "noted",
)
#: states that count against budgets: scans asked of the beamline
COUNTED = ("approved", "submitted", "running", "completed")
#: states a person may approve from (a failed one again: an explicit retry, never a blind one)
APPROVABLE = ("pending", "held", "failed")
REJECTABLE = ("pending", "held", "failed", "approved")

SCHEMA = """
CREATE TABLE IF NOT EXISTS suggestions (
    uid TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    received TEXT NOT NULL,
    agent TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    confidence REAL,
    reason TEXT NOT NULL,
    scans INTEGER NOT NULL,
    numbers TEXT NOT NULL,
    item TEXT,
    state TEXT NOT NULL,
    state_reason TEXT NOT NULL DEFAULT '',
    updated TEXT NOT NULL,
    queued TEXT,
    item_uid TEXT NOT NULL DEFAULT '',
    run TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL,
    time TEXT NOT NULL,
    decision TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL,
    body TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS servers (
    address TEXT PRIMARY KEY,
    heard TEXT NOT NULL
);
"""


def _connect(path: Path, query: str) -> sqlite3.Connection:
    uri = f"{path.absolute().as_uri()}?{query}"
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


class InboxError(PipelinesError):
    """The inbox cannot be read or the request does not fit (unknown id, wrong state)."""


def now() -> str:
    return datetime.now(UTC).isoformat()


def local_time(iso: str) -> str:
    """An inbox time (UTC) as people at the beamline read it: their local time, zone named."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass
class Entry:
    """One suggestion as the inbox holds it."""

    uid: str
    instance: str
    received: str
    agent: str
    action: str
    target: str
    confidence: float | None
    reason: str
    scans: int
    numbers: dict[str, Any]
    item: dict[str, Any] | None
    state: str
    state_reason: str = ""
    updated: str = ""
    queued: str | None = None
    item_uid: str = ""
    #: the pipeline run the bridge received it in (empty outside a run, and in older inboxes)
    run: str = ""
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def feedback(self) -> dict[str, Any]:
        """The status message of CONTRACTS.md for this entry's current state."""
        return {
            "uid": self.uid,
            "target": self.target,
            "state": self.state,
            "scans": self.scans,
            "reason": self.state_reason,
            "time": self.updated or now(),
        }


class Inbox:
    """The inbox database at `path` (created on first use). `read_only`: for a reader alone
    (the listing), which then also reads an inbox archived on a read-only file system with
    the store it sits in."""

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path)
        self._copy: Path | None = None
        if not create and not self.path.exists():
            raise InboxError(
                f"no suggestion inbox at {self.path} yet: the bridge has not received a "
                "suggestion (run the pipeline first)"
            )
        if read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._add_run_column()
        except (OSError, sqlite3.Error) as exc:
            raise InboxError(f"cannot open the suggestion inbox {self.path}: {exc}") from None
        self.db.row_factory = sqlite3.Row

    def _add_run_column(self) -> None:
        """An inbox written before suggestions recorded their run gets the column (empty)."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(suggestions)")}
        if "run" not in columns:
            self.db.execute("ALTER TABLE suggestions ADD COLUMN run TEXT NOT NULL DEFAULT ''")

    def _open_read_only(self) -> None:
        """A connection that changes nothing, as the embedded store reads its indexes
        (`asapo_pipelines.transport.embedded`): in a folder this process may write, a
        read-write one with ``query_only`` (the last to close removes ``-wal`` and ``-shm``);
        elsewhere ``mode=ro`` through an ``-shm`` file a live writer keeps; without one
        ``immutable=1``, unless a ``-wal`` file still holds commits (a writer killed before
        its checkpoint): those are read from a private copy, where SQLite replays them."""
        wal, shm = (self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))
        try:
            if os.access(self.path.parent, os.W_OK):
                self.db = _connect(self.path, "mode=rw")
                self.db.execute("PRAGMA query_only=ON")
            elif shm.exists():
                self.db = _connect(self.path, "mode=ro")
            elif not wal.exists() or wal.stat().st_size == 0:
                self.db = _connect(self.path, "mode=ro&immutable=1")
            else:
                self._copy = Path(tempfile.mkdtemp(prefix="asapo-pipelines-inbox-"))
                for file in (self.path, wal):
                    shutil.copyfile(file, self._copy / file.name)
                self.db = _connect(self._copy / self.path.name, "mode=ro")
            self.db.execute("SELECT 1 FROM suggestions LIMIT 1")
        except (OSError, sqlite3.Error) as exc:
            self._forget_copy()
            raise InboxError(f"cannot read the suggestion inbox {self.path}: {exc}") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()
        self._forget_copy()

    def _forget_copy(self) -> None:
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE: a person's approve and the bridge's update never interleave on one row
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def deciding(self, *, wait: bool = True) -> Iterator[bool]:
        """The inbox's decision lock, a file beside it: a person's approve holds it from
        recording `approved` until the server's answer is recorded (a reject holds it too), so
        a suggestion found `approved` by whoever holds the lock is one whose approve stopped
        half-way (killed, interrupted): the kernel releases the lock of a process that dies.
        Yields False instead of waiting when `wait` is False and someone else holds it."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InboxError(f"cannot lock the suggestion inbox {self.path}: {exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    # -- reading -------------------------------------------------------------------------------
    def _entry(self, row: sqlite3.Row) -> Entry:
        data = dict(row)
        data["numbers"] = json.loads(data["numbers"])
        data["item"] = json.loads(data["item"]) if data["item"] else None
        entry = Entry(**data)
        entry.decisions = [
            dict(r)
            for r in self.db.execute(
                "SELECT time, decision, by, reason FROM decisions WHERE uid = ? ORDER BY seq",
                (entry.uid,),
            )
        ]
        return entry

    def entries(self, instance: str | None = None) -> list[Entry]:
        sql = "SELECT * FROM suggestions"
        args: tuple[Any, ...] = ()
        if instance is not None:
            sql += " WHERE instance = ?"
            args = (instance,)
        return [self._entry(r) for r in self.db.execute(sql + " ORDER BY received, uid", args)]

    def get(self, uid: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM suggestions WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else self._entry(row)

    def find(self, prefix: str) -> Entry:
        """The entry whose uid is `prefix` or starts with it (like a short git hash)."""
        prefix = prefix.strip()
        if not prefix:
            raise InboxError("give the id of a suggestion (see `pipeline suggestions FILE`)")
        rows = self.db.execute(
            "SELECT * FROM suggestions WHERE uid = ? OR uid LIKE ? ESCAPE '\\' LIMIT 3",
            (prefix, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
        ).fetchall()
        exact = [r for r in rows if r["uid"] == prefix]
        if exact:
            return self._entry(exact[0])
        if not rows:
            raise InboxError(
                f"no suggestion {prefix} in the inbox {self.path}; "
                "`pipeline suggestions FILE` lists their ids"
            )
        if len(rows) > 1:
            raise InboxError(f"the id {prefix} is ambiguous; give more of it")
        return self._entry(rows[0])

    def scans_counted(
        self,
        instance: str,
        *,
        target: str | None = None,
        since: str | None = None,
        run: str | None = None,
    ) -> int:
        """The scans `instance` (one bridge) asked of its queue server: in a shared inbox the
        other bridges' scans go to their own servers and count against their own budgets."""
        sql = (
            f"SELECT COALESCE(SUM(scans), 0) FROM suggestions WHERE state IN {COUNTED!r} "
            "AND instance = ?"
        )
        args: list[Any] = [instance]
        if run is not None:
            sql += " AND run = ?"
            args.append(run)
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        if since is not None:
            sql += " AND queued >= ?"
            args.append(since)
        return int(self.db.execute(sql, args).fetchone()[0])

    def state_counts(self, instance: str) -> dict[str, int]:
        """How many of `instance`'s suggestions are in each state, in the order of `STATES`."""
        rows = self.db.execute(
            "SELECT state, COUNT(*) FROM suggestions WHERE instance = ? GROUP BY state",
            (instance,),
        ).fetchall()
        found = {str(r[0]): int(r[1]) for r in rows}
        return {s: found.pop(s) for s in STATES if s in found} | found

    def decisions(self) -> list[dict[str, Any]]:
        """Every person's decision, oldest first, for provenance."""
        return [dict(r) for r in self.db.execute("SELECT * FROM decisions ORDER BY seq")]

    def last_heard(self, address: str) -> str | None:
        """When the queue server at `address` last answered the bridge (UTC), or None."""
        row = self.db.execute("SELECT heard FROM servers WHERE address = ?", (address,)).fetchone()
        return None if row is None else str(row["heard"])

    # -- writing -------------------------------------------------------------------------------
    def add(self, entry: Entry) -> bool:
        """Record a new suggestion; False when its uid is known (a redelivered message)."""
        entry.updated = entry.updated or now()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO suggestions (uid, instance, received, agent, action, "
                "target, confidence, reason, scans, numbers, item, state, state_reason, updated, "
                "run) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.uid,
                    entry.instance,
                    entry.received,
                    entry.agent,
                    entry.action,
                    entry.target,
                    entry.confidence,
                    entry.reason,
                    entry.scans,
                    json.dumps(entry.numbers),
                    json.dumps(entry.item) if entry.item is not None else None,
                    entry.state,
                    entry.state_reason,
                    entry.updated,
                    entry.run,
                ),
            )
            if cur.rowcount and entry.state != "noted":
                self._feedback(db, entry)
            return bool(cur.rowcount)

    def set_state(
        self,
        uid: str,
        state: str,
        reason: str = "",
        *,
        item_uid: str | None = None,
        if_still: tuple[str, str] | None = None,
    ) -> Entry:
        """Move a suggestion to `state` (no-op when it is there already); queues feedback.
        `if_still`: only while its (state, item uid) are these, as read before asking the
        server (another process may have moved it meanwhile); else it is returned as it is."""
        if state not in STATES:
            raise ValueError(f"unknown state {state}")
        with self.transaction() as db:
            entry = self.get(uid)
            if entry is None:
                raise InboxError(f"no suggestion {uid} in the inbox {self.path}")
            if entry.state == state and entry.state_reason == reason:
                return entry
            if if_still is not None and (entry.state, entry.item_uid) != if_still:
                return entry
            return self._move(db, entry, state, reason, item_uid)

    def claim(
        self,
        uid: str,
        state: str,
        reason: str,
        *,
        from_states: tuple[str, ...],
        decision: str,
        by: str,
        said: str = "",
    ) -> tuple[bool, Entry]:
        """A person's decision (`said`: the reason they gave): records it and moves suggestion
        `uid` to `state`, in one transaction and only while the suggestion is in one of
        `from_states`. (False, the entry as it is now) when another decision got there first:
        of two approves at once (a double click, the viewer and the command line) only one may
        queue the item."""
        with self.transaction() as db:
            entry = self.get(uid)
            if entry is None:
                raise InboxError(f"no suggestion {uid} in the inbox {self.path}")
            if entry.state not in from_states:
                return False, entry
            db.execute(
                "INSERT INTO decisions (uid, time, decision, by, reason) VALUES (?, ?, ?, ?, ?)",
                (uid, now(), decision, by, said),
            )
            return True, self._move(db, entry, state, reason, None)

    def _move(
        self, db: sqlite3.Connection, entry: Entry, state: str, reason: str, item_uid: str | None
    ) -> Entry:
        """Write `entry`'s new state, with its feedback, inside the caller's transaction."""
        entry.state, entry.state_reason, entry.updated = state, reason, now()
        if state in COUNTED and entry.queued is None:
            entry.queued = entry.updated
        if item_uid:
            entry.item_uid = item_uid
        db.execute(
            "UPDATE suggestions SET state = ?, state_reason = ?, updated = ?, queued = ?, "
            "item_uid = ? WHERE uid = ?",
            (state, reason, entry.updated, entry.queued, entry.item_uid, entry.uid),
        )
        self._feedback(db, entry)
        return entry

    def note(self, uid: str, reason: str) -> None:
        """Replace the reason of a suggestion without changing its state (nothing is sent: what
        a `noted` stop did is for people, the agent follows the suggestions it cancelled)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE suggestions SET state_reason = ?, updated = ? WHERE uid = ?",
                (reason, now(), uid),
            )

    def _feedback(self, db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "INSERT INTO feedback (uid, body) VALUES (?, ?)",
            (entry.uid, json.dumps(entry.feedback())),
        )

    def heard_from(self, address: str) -> None:
        """The queue server at `address` answered just now."""
        self.db.execute(
            "INSERT INTO servers (address, heard) VALUES (?, ?) "
            "ON CONFLICT(address) DO UPDATE SET heard = excluded.heard",
            (address, now()),
        )

    def unsent(self) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.execute("SELECT seq, body FROM feedback WHERE sent = 0 ORDER BY seq")
        return [(int(r["seq"]), json.loads(r["body"])) for r in rows]

    def mark_sent(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self.transaction() as db:
            db.executemany("UPDATE feedback SET sent = 1 WHERE seq = ?", [(s,) for s in seqs])
