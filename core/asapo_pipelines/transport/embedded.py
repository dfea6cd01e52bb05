"""The embedded transport: an on-disk store in one directory, shared by many processes.

Layout (one SQLite database per data source, so sources never contend for one write lock)::

    <root>/store.json                         marker: format and version
    <root>/<data source>/index.db             SQLite in WAL mode: streams, messages, groups
    <root>/<data source>/index.made           made once the index holds its tables
    <root>/<data source>/payloads/<sid>/<seg>.seg   append-only payload segments

A producer appends payloads to its own segment file per stream (no locking between producers;
one ``os.write`` per payload), then commits the message's index row. Readers only see committed
rows, so a producer killed between the two leaves unreferenced bytes and never a broken message.
Payloads up to `INLINE_MAX` bytes live in the index row itself (one write, no file). Large
payloads are memory-mapped by the consumer (no copy; the page cache is shared with the writer).

Consumer groups: each group has a cursor per stream over the arrival order (``seq``) of messages,
and a table of in-flight deliveries with a due time (the lease). Claiming takes expired
deliveries first, then messages past the cursor, in one short ``BEGIN IMMEDIATE`` transaction, so
each message is out to one consumer at a time and consumers of a group share the load.
Acknowledging deletes the in-flight row and records the ack (idempotent).

Durability: WAL with ``synchronous=NORMAL`` survives kill -9 of any process (a commit is in the
WAL file in the page cache when it returns; only an OS crash or power loss can lose the last
commits). ``fsync=True`` adds fsync of payloads and ``synchronous=FULL`` for power-loss safety.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import mmap
import os
import re
import select
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import xxhash

from asapo_pipelines import storage
from asapo_pipelines.transport.base import (
    DEFAULT_LEASE_SECONDS,
    LEASE_MARGIN,
    Consumer,
    Message,
    Producer,
    PruneReport,
    StreamInfo,
    Transport,
    check_group,
    check_source,
    check_stream,
    decode_metadata,
    encode_metadata,
)
from asapo_pipelines.transport.errors import (
    CorruptPayload,
    DuplicateId,
    EndOfStream,
    IndexLost,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")

STORE_FORMAT = "asapo-pipelines-embedded"
STORE_VERSION = 1
INDEX_NAME = "index.db"
#: Made beside the index once its tables are committed. An index missing or empty (0 bytes)
#: where this file is was lost (a full disk, a bad copy, `: > index.db`): opened as a new
#: one, it had a source send every input again into results that held them. SQLite leaves
#: a new index empty only until the switch to WAL, before this file is made.
MADE_NAME = "index.made"
#: a data source of one run (`<pipeline>.r3.<stream>`, `worker.naming`): a new run has its own
_RUN_SOURCE = re.compile(r"^[^.]+\.(r[0-9]{1,7})\.")
#: payloads up to this size are stored in the index row (one write instead of two)
INLINE_MAX = 16 * 1024
#: payloads from this size on are memory-mapped instead of read with pread
MMAP_MIN = 256 * 1024
#: a producer starts a new segment file after this many bytes
SEGMENT_MAX = 1 << 30
#: segment files grow in steps of this size (fallocate): fewer block allocations per write
SEGMENT_STEP = 64 * 1024 * 1024
BUSY_TIMEOUT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams(
    sid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_ts REAL,
    last_id INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    finish_id INTEGER,
    next_stream TEXT,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS messages(
    seq INTEGER PRIMARY KEY,
    sid INTEGER NOT NULL,
    id INTEGER NOT NULL,
    ts REAL NOT NULL,
    size INTEGER NOT NULL,
    meta TEXT NOT NULL,
    inline BLOB,
    seg INTEGER,
    off INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages(sid, id);
CREATE INDEX IF NOT EXISTS messages_by_seq ON messages(sid, seq);
CREATE TABLE IF NOT EXISTS segments(
    seg INTEGER PRIMARY KEY,
    sid INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors(
    grp TEXT NOT NULL, sid INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(grp, sid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inflight(
    grp TEXT NOT NULL, sid INTEGER NOT NULL, id INTEGER NOT NULL,
    due REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(grp, sid, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inflight_by_due ON inflight(grp, sid, due);
CREATE TABLE IF NOT EXISTS acks(
    grp TEXT NOT NULL, sid INTEGER NOT NULL, id INTEGER NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY(grp, sid, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_meta(k INTEGER PRIMARY KEY CHECK (k = 0), meta TEXT NOT NULL);
"""

_MSG_COLS = "id, ts, size, meta, inline, seg, off, xxh"
#: ids per `IN (...)` query: well below SQLite's bound on a statement's variables
_IN_CHUNK = 500
#: the payload columns of a row read for its metadata only (`get_metadata_by_id`)
_NO_PAYLOAD = (None, None, None, None)

#: The index layout (SQLite's `user_version`). Version 1 keeps running totals that stream
#: information reads instead of counting rows: each stream's message count and payload bytes
#: (`streams.n_messages`, `n_bytes`), each group's acknowledgement count and latest
#: acknowledgement per stream (`cursors.n_acked`, `last_ack`). Counting took time in proportion
#: to the stream (21 ms for 20,000 messages, seconds for millions) on every worker refresh,
#: `pipeline status` and retention pass.
#: Version 2 keeps each payload's xxh3_64 checksum (`messages.xxh`, signed as SQLite stores
#: integers), checked on every read: a length check alone let zeroed or flipped bytes through
#: as a silently wrong result. Rows written before have none (NULL) and are read unchecked.
INDEX_VERSION = 2

#: (index version that added it, table, column)
_COLUMNS = (
    (1, "streams", "n_messages INTEGER NOT NULL DEFAULT 0"),
    (1, "streams", "n_bytes INTEGER NOT NULL DEFAULT 0"),
    (1, "cursors", "n_acked INTEGER NOT NULL DEFAULT 0"),
    (1, "cursors", "last_ack REAL"),
    (2, "messages", "xxh INTEGER"),
)

_U64 = (1 << 64) - 1


def _checksum(payload: bytes | bytearray | memoryview) -> int:
    """The payload's xxh3_64 (no copy of a buffer), as the signed 64-bit integer SQLite keeps;
    a reader compares `xxh & _U64` with the plain digest."""
    value = xxhash.xxh3_64_intdigest(payload)
    return value - (1 << 64) if value >> 63 else value


def _intact(payload: bytes | memoryview, xxh: int | None) -> bool:
    """Whether a payload read back matches the checksum written with it (hashed in place, no
    copy); one written before checksums were kept (None) is taken as it is."""
    return xxh is None or xxhash.xxh3_64_intdigest(payload) == xxh & _U64


def _migrate(db: sqlite3.Connection, data_source: str) -> None:
    """Bring an index to `INDEX_VERSION` inside the opening write transaction (a new store is
    version 0 too): add the columns of later versions and compute the running totals once
    from the rows."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > INDEX_VERSION:
        raise TransportConfigError(
            f"the store of data source {data_source!r} was written by a newer asapo-pipelines "
            f"(index version {version}, this one reads {INDEX_VERSION}); upgrade to read it"
        )
    if version == INDEX_VERSION:
        return
    for since, table, column in _COLUMNS:
        if since > version and column.split()[0] not in _columns_of(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    if version < 1:
        _recount(db)
    db.execute(f"PRAGMA user_version={INDEX_VERSION}")


def _columns_of(db: sqlite3.Connection, table: str) -> set[str]:
    # a column may be there already: an index taken back to an older version by hand keeps
    # the columns it does not know
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _recount(db: sqlite3.Connection) -> None:
    """Compute the running totals from the rows (after a migration, or after `prune` deleted
    single messages of live streams)."""
    db.execute(
        "UPDATE streams SET n_messages=(SELECT count(*) FROM messages m WHERE m.sid=streams.sid), "
        "n_bytes=(SELECT coalesce(sum(size), 0) FROM messages m WHERE m.sid=streams.sid)"
    )
    # a group that acknowledged without taking (no cursor yet) gets one, as it would on taking
    db.execute("INSERT OR IGNORE INTO cursors(grp, sid, seq) SELECT DISTINCT grp, sid, 0 FROM acks")
    db.execute(
        "UPDATE cursors SET "
        "n_acked=(SELECT count(*) FROM acks a WHERE a.grp=cursors.grp AND a.sid=cursors.sid), "
        "last_ack=(SELECT max(ts) FROM acks a WHERE a.grp=cursors.grp AND a.sid=cursors.sid)"
    )


def _storage_error(data_source: str, directory: Path, exc: BaseException) -> StorageError:
    """A failure of the disk or of the index file under a data source, in one sentence."""
    if isinstance(exc, sqlite3.Error):
        path: Path = directory / INDEX_NAME
    else:
        filename = getattr(exc, "filename", None)
        path = Path(filename) if filename else directory
    kind = _kind_in_store(path, exc)
    return StorageError(
        storage.describe(f"the store of data source {data_source!r}", path, kind=kind, exc=exc),
        kind,
    )


#: what the OS says when a path of the store is not of the type the store made it: a file
#: where it keeps a directory (its payloads), a directory where it keeps a file
_WRONG_TYPE = (errno.EISDIR, errno.ENOTDIR, errno.EEXIST)


def _kind_in_store(path: Path, exc: BaseException) -> str:
    """`storage.kind_of`, but a path of the store's own layout that has the wrong type (a
    segment file replaced by a directory, the payloads directory by a file, the index by a
    directory, which SQLite reports as "unable to open") is damage: a restart meets it again,
    and neither free space nor a permission mends it."""
    kind = storage.kind_of(exc)
    if kind not in (storage.OTHER, storage.DENIED):
        return kind
    if isinstance(exc, OSError) and exc.errno in _WRONG_TYPE:
        return storage.DAMAGED
    if isinstance(exc, sqlite3.Error) and path.is_dir():
        return storage.DAMAGED
    return kind


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turns a storage failure (SQLite or the file system) inside a producer's or consumer's
    public method into one StorageError sentence naming the path and the remedy."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (sqlite3.DatabaseError, OSError) as exc:
            self: Any = args[0]
            raise _storage_error(self.data_source, self._src.dir, exc) from None

    return wrapper


def _held_data(directory: Path) -> bool:
    """Whether a data source's folder says its index held data: the marker made with the
    index's tables, or (in a store made before the marker) a payload segment file."""
    if (directory / MADE_NAME).exists():
        return True
    with contextlib.suppress(OSError):
        return any((directory / "payloads").glob("*/*.seg"))
    return False


def _holds_index(directory: Path) -> bool:
    """Whether `directory` is a data source to list: it has an index (one stat), and one cut to
    nothing where the source held data is lost (`lost_data_sources`), not a source."""
    try:
        size = (directory / INDEX_NAME).stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return False
    return bool(size) or not _held_data(directory)


def _lost_index(root: Path, data_source: str) -> IndexLost | None:
    """The sentence for an index that is gone or cut to nothing under a data source that
    held data, with what to do: a run's own data source is left behind by a new run; one
    every run shares (run records, errors, counters, an external stream) must be restored or
    moved aside."""
    directory = root / data_source
    index = directory / INDEX_NAME
    # The marker first, then the index: an opener makes the index, fills it and only then
    # the marker, so a marker seen before an index found missing or empty is a loss. The
    # other order took a data source another process was making at that moment (a
    # pipeline's workers starting together) for a lost one, and refused it.
    if not _held_data(directory):
        return None
    try:
        size: int | None = index.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError:
        return None  # said by the opening itself, with the OS's reason
    if size:
        return None
    run = _RUN_SOURCE.match(data_source)
    if run:
        # after `--fresh` the lost run stays behind, said by every `streams` and `prune`:
        # `prune --run` is what removes it (`drop_lost_source`)
        remedy = (
            "or start over in a new run with `pipeline run --fresh FILE`, which processes "
            f"every input again (`pipeline prune FILE --run {run[1]}` then removes run "
            f"{run[1]} with what is left of it)"
        )
    else:
        remedy = (
            f"or move the folder {directory} aside to start that data source over without "
            "what it held"
        )
    return IndexLost(
        f"the index of data source {data_source!r} ({index}) is "
        f"{'missing' if size is None else 'empty (0 bytes)'}, though the data source held "
        "data: it is not opened as a new one, which would count what it held as never "
        f"written (a source would send every input again); restore {index} from a backup, "
        f"{remedy}",
        storage.DAMAGED,
    )


class _Waker:
    """Wakes a waiting consumer when any process commits a change to the data source's index.

    Every write transaction that changed rows rings a doorbell once its COMMIT has returned
    (`_SourceDB.write` touches `write.lock`), and on Linux an inotify watch on the source
    directory sees that attribute change, so a consumer sleeps in select() instead of polling;
    elsewhere it falls back to short sleeps. Events are drained before each check, so a commit
    between check and wait is never missed. The WAL file's own writes are not watched: SQLite
    appends a commit's frames before it publishes them in the shared index, so a reader woken
    by the write could look, see nothing new yet, and sleep through the commit.
    """

    IN_ATTRIB = 0x00000004

    def __init__(self, directory: Path) -> None:
        self.fd = -1
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return
            if libc.inotify_add_watch(fd, os.fsencode(directory), self.IN_ATTRIB) < 0:
                os.close(fd)
                return
            self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1

    def drain(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self.fd, 65536):
                pass

    def wait(self, seconds: float, pause: float) -> float:
        """Sleep until a commit or ``seconds``; returns the next fallback pause."""
        if self.fd >= 0:
            # a safety cap in case an event is missed (e.g. a store on a network file system)
            with contextlib.suppress(InterruptedError):
                select.select([self.fd], [], [], min(seconds, 0.05))
            return pause
        time.sleep(min(seconds, pause))
        return min(pause * 2, 0.01)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _connect_read_only(path: Path, src: _SourceDB) -> sqlite3.Connection:
    """A connection that reads the index and changes nothing in it.

    In a folder this process may write, SQLite's own read-write connection with
    ``query_only``: it refuses every change, and as the last connection to close it removes
    the ``-wal`` and ``-shm`` files as any connection does, where a ``mode=ro`` one would
    leave them behind in every data source that was only looked at. Elsewhere ``mode=ro``,
    which reads a WAL index through its ``-shm`` file, opened read-only when it is there (a
    live writer may be committing through it). With no ``-shm`` in a folder that cannot be
    written, ``immutable=1`` reads the index file alone, without the locks and change checks
    nothing needs then: no ``-shm`` means no connection has the index open, and none can
    open it for writing in that folder. But ``immutable=1`` ignores the ``-wal`` file, where
    commits of a writer killed before its last checkpoint still are: an index with such a
    file is read from a private copy of the two files, in which SQLite can replay the log."""
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if os.access(path.parent, os.W_OK):
        db = _connect_uri(path, "mode=rw")
        db.execute("PRAGMA query_only=ON")
        return db
    if shm.exists():
        return _connect_uri(path, "mode=ro")
    if not wal.exists() or wal.stat().st_size == 0:
        return _connect_uri(path, "mode=ro&immutable=1")
    src._copy = Path(tempfile.mkdtemp(prefix="asapo-pipelines-index-"))
    shutil.copyfile(path, src._copy / path.name)
    shutil.copyfile(wal, src._copy / wal.name)
    return _connect_uri(src._copy / path.name, "mode=ro")


def _connect_uri(path: Path, query: str) -> sqlite3.Connection:
    uri = f"{path.absolute().as_uri()}?{query}"
    return sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


class _SourceDB:
    """One connection to a data source's index, with short write transactions."""

    def __init__(
        self,
        root: Path,
        data_source: str,
        *,
        fsync: bool,
        create: bool,
        cache_sids: bool = True,
        read_only: bool = False,
    ) -> None:
        self.data_source = data_source
        # consumers look stream ids up each time: a stream dropped and written again by other
        # processes gets a new id (producers notice that when they write)
        self.cache_sids = cache_sids
        self.dir = root / data_source
        self.fsync = fsync
        self.read_only = False  # until the index is open: a writable opening writes it
        self._copy: Path | None = None
        self._sids: dict[str, int] = {}
        self.lock = threading.RLock()
        path = self.dir / INDEX_NAME
        lost = _lost_index(root, data_source)
        if lost is not None:
            raise lost
        if not path.exists() and not create:
            raise TransportConfigError(f"data source {data_source!r} does not exist in {root}")
        if read_only and not path.exists():
            self._open_empty()
            return
        if read_only and self._open_read_only(path):
            self.read_only = True
            return
        try:
            (self.dir / "payloads").mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise _storage_error(data_source, self.dir, exc) from None
        # Writers queue on an flock before BEGIN IMMEDIATE: the kernel wakes the next writer the
        # moment the lock is released, where SQLite's busy handler would sleep for milliseconds.
        # The lock goes away with its process, so a kill -9 never leaves it held.
        try:
            self.lock_fd = os.open(
                self.dir / "write.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            self.db.close()
            raise _storage_error(data_source, self.dir, exc) from None
        try:
            self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            # Processes opening a new index at the same moment (a pipeline's workers starting
            # together) take turns: a second switch to WAL or a read during the first one's
            # WAL set-up can get "database is locked" at once, without the busy handler.
            with self.lock:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
                try:
                    if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        self.db.execute("PRAGMA journal_mode=WAL")
                finally:
                    fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self.db.execute("PRAGMA cache_size=-16000")
            with self.write():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                _migrate(self.db, data_source)
            self._mark_made()
        except StorageError:
            self.db.close()
            os.close(self.lock_fd)
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            self.db.close()
            os.close(self.lock_fd)
            raise _storage_error(data_source, self.dir, exc) from None
        except TransportError as exc:
            self.db.close()
            os.close(self.lock_fd)
            raise TransportConfigError(
                f"the index of data source {data_source!r} ({path}) is unusable: {exc}"
            ) from None
        self.read_only = read_only

    def _mark_made(self) -> None:
        """Say beside the index that it holds its tables (`MADE_NAME`), once: from then on an
        index found missing or empty is damage, not a new data source."""
        made = self.dir / MADE_NAME
        if made.exists():
            return
        # a marker that cannot be made (no inode left) only weakens that check: not an error
        with contextlib.suppress(OSError):
            os.close(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))

    def _open_read_only(self, path: Path) -> bool:
        """Open the index for reading alone (`EmbeddedTransport(read_only=True)`): no
        `write.lock`, no payloads folder, no switch to WAL, nothing written, so that a store
        archived on a read-only file system can still be inspected. False, with nothing
        open, for an index that must be written first in a folder that may be written: one of
        an older version (brought up to date, as any opening did before), or one a starting
        worker has made but not filled yet (version 0: its tables come with its version in
        one transaction, which the writable opening waits for on `write.lock`)."""
        try:
            self.db = _connect_read_only(path, self)
        except (OSError, sqlite3.Error) as exc:
            self._drop_copy()
            raise _storage_error(self.data_source, self.dir, exc) from None
        self.lock_fd = -1
        try:
            self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _storage_error(self.data_source, self.dir, exc) from None
        if version == INDEX_VERSION:
            return True
        self.close()
        if version < INDEX_VERSION and self._copy is None and os.access(self.dir, os.W_OK):
            return False
        raise TransportConfigError(
            f"the store of data source {self.data_source!r} ({path}) has index version "
            f"{version}, and this asapo-pipelines reads version {INDEX_VERSION}"
            + (
                "; upgrade to read it"
                if version > INDEX_VERSION
                else ", to which it brings an older index only where it may write: make the "
                "store writable once (any `pipeline streams` of it then updates the index), or "
                "read a writable copy of it"
            )
        )

    def _open_empty(self) -> None:
        """A data source no one has written yet, read without making it: an empty index in
        memory, as a writable opening would have made it on disk (a consumer of the workers'
        counters before the first one published sees no streams, not an error)."""
        self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)
        _migrate(self.db, self.data_source)
        self.db.execute("PRAGMA query_only=ON")
        self.lock_fd = -1
        self.read_only = True

    def _drop_copy(self) -> None:
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            # a caller's bug, not the user's: the inspecting commands only read
            raise TransportError(
                f"the store of data source {self.data_source!r} is open for reading only"
            )
        with self.lock:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise Unavailable(
                        f"the store of data source {self.data_source!r} stayed locked for "
                        f"{BUSY_TIMEOUT_S:.0f} s ({exc})"
                    ) from None
                changes = self.db.total_changes
                try:
                    yield self.db
                    self.db.execute("COMMIT")
                except BaseException as exc:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                        exc, sqlite3.IntegrityError
                    ):
                        # e.g. a full disk or a damaged file: one sentence, not a traceback
                        raise _storage_error(self.data_source, self.dir, exc) from None
                    raise
                if self.db.total_changes != changes:
                    self._ring()
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _ring(self) -> None:
        """Tell waiting consumers (`_Waker`) that a commit is visible now: an attribute change
        of `write.lock`, one system call on a descriptor already open. A transaction that
        changed nothing rings no bell, so idle consumers looking for work never wake each
        other."""
        with contextlib.suppress(OSError):
            os.utime(self.lock_fd)

    def sid(self, stream: str, *, create: bool) -> int | None:
        """The stream's numeric id; creating the stream needs an open write transaction."""
        sid = self._sids.get(stream)
        if sid is not None:
            return sid
        row = self.db.execute("SELECT sid FROM streams WHERE name=?", (stream,)).fetchone()
        if row is None:
            if not create:
                return None
            cur = self.db.execute(
                "INSERT INTO streams(name, created) VALUES (?, ?)", (stream, time.time())
            )
            sid = int(cur.lastrowid or 0)
        else:
            sid = int(row[0])
        if self.cache_sids:
            self._sids[stream] = sid
        return sid

    def forget(self, stream: str) -> None:
        self._sids.pop(stream, None)

    def forget_sid(self, sid: int) -> None:
        for name, known in list(self._sids.items()):
            if known == sid:
                del self._sids[name]

    def close(self) -> None:
        with self.lock:
            self.db.close()
            if self.lock_fd >= 0:
                os.close(self.lock_fd)
            self._drop_copy()


@dataclass
class _Segment:
    seg: int
    sid: int
    fd: int
    offset: int
    allocated: int = 0


class EmbeddedProducer(Producer):
    def __init__(self, transport: EmbeddedTransport, data_source: str) -> None:
        self.data_source = data_source
        self._src = _SourceDB(transport.root, data_source, fsync=transport.fsync, create=True)
        self._segments: dict[str, _Segment] = {}
        self._closed = False

    # -- payload files ---------------------------------------------------------------------
    def _segment(self, stream: str, sid: int) -> _Segment:
        seg = self._segments.get(stream)
        if seg is not None and seg.sid == sid and seg.offset < SEGMENT_MAX:
            return seg
        if seg is not None:
            os.close(seg.fd)
        with self._src.write() as db:
            cur = db.execute(
                "INSERT INTO segments(sid, path, created) VALUES (?, '', ?)", (sid, time.time())
            )
            seg_id = int(cur.lastrowid or 0)
            rel = f"payloads/{sid}/{seg_id}.seg"
            db.execute("UPDATE segments SET path=? WHERE seg=?", (rel, seg_id))
        path = self._src.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        seg = _Segment(seg_id, sid, fd, 0)
        self._segments[stream] = seg
        return seg

    def _write_payload(
        self, seg: _Segment, payload: bytes | bytearray | memoryview
    ) -> tuple[int, int]:
        """Append `payload` to the segment: (its offset, its checksum)."""
        view = memoryview(payload).cast("B")
        xxh = _checksum(view)
        offset = seg.offset
        end = offset + len(view)
        if end > seg.allocated:
            # reserve blocks ahead, doubling up to SEGMENT_STEP so small streams stay small;
            # readers never look past the payloads the index records
            step = max(len(view), min(SEGMENT_STEP, max(1 << 20, seg.allocated)))
            with contextlib.suppress(OSError):
                os.posix_fallocate(seg.fd, seg.allocated, step)
            seg.allocated += step
        written = 0
        try:
            while written < len(view):
                written += os.pwrite(seg.fd, view[written:], offset + written)
            if self._src.fsync:
                os.fdatasync(seg.fd)
        except OSError:
            # the bytes written so far are never referenced; the next payload goes after them;
            # send and send_many (`_guarded`) turn the error into the store's one sentence
            seg.offset += written
            raise
        seg.offset += written
        return offset, xxh

    # -- sending ---------------------------------------------------------------------------
    def _stream_sid(self, stream: str) -> int:
        sid = self._src._sids.get(stream)
        if sid is None:
            with self._src.write():
                sid = self._src.sid(stream, create=True)
        assert sid is not None
        return sid

    @_guarded
    def send(
        self,
        stream: str,
        payload: bytes | bytearray | memoryview | None,
        metadata: Mapping[str, Any] | None = None,
        *,
        id: int | None = None,
    ) -> int:
        return self._send_batch(stream, [(payload, metadata)], id)[0]

    @_guarded
    def send_many(
        self,
        stream: str,
        items: Iterable[tuple[bytes | bytearray | memoryview | None, Mapping[str, Any] | None]],
    ) -> list[int]:
        return self._send_batch(stream, list(items), None)

    def _send_batch(
        self,
        stream: str,
        items: list[tuple[bytes | bytearray | memoryview | None, Mapping[str, Any] | None]],
        explicit_id: int | None,
    ) -> list[int]:
        if self._closed:
            raise TransportError(f"producer of data source {self.data_source!r} is closed")
        check_stream(stream)
        if not items:
            return []
        if explicit_id is not None and (not isinstance(explicit_id, int) or explicit_id < 1):
            raise TransportConfigError(f"message ids start at 1, got {explicit_id!r}")
        for _attempt in range(3):
            sid = self._stream_sid(stream)
            # payloads first (outside the lock): a row is committed only after its bytes exist
            rows: list[tuple[int, str, bytes | None, int | None, int | None, int | None]] = []
            for payload, meta in items:
                meta_text = "{}" if meta is None else encode_metadata(meta, "message metadata")
                if payload is None:
                    rows.append((0, meta_text, None, None, None, None))
                    continue
                size = memoryview(payload).nbytes
                if size <= INLINE_MAX:
                    blob = payload if type(payload) is bytes else bytes(payload)
                    rows.append((size, meta_text, blob, None, None, _checksum(blob)))
                else:
                    seg = self._segment(stream, sid)
                    offset, xxh = self._write_payload(seg, payload)
                    rows.append((size, meta_text, None, seg.seg, offset, xxh))
            now = time.time()
            with self._src.write() as db:
                alive = db.execute("SELECT last_id FROM streams WHERE sid=?", (sid,)).fetchone()
                if alive is None:
                    # the stream was dropped (retention) since we cached its id: start over
                    self._src.forget(stream)
                    self._segments.pop(stream, None)
                    continue
                next_id = int(alive[0]) + 1
                ids: list[int] = []
                added = added_bytes = 0  # rows new in the index (a retried send adds none)
                if explicit_id is None:
                    # automatic ids follow the largest id under the write lock: no conflicts
                    ids = list(range(next_id, next_id + len(rows)))
                    db.executemany(
                        "INSERT INTO messages(sid, id, ts, size, meta, inline, seg, off, xxh) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(sid, mid, now, *row) for mid, row in zip(ids, rows, strict=True)],
                    )
                    added, added_bytes = len(ids), sum(row[0] for row in rows)
                    rows = []
                for size, meta_text, inline, seg_id, off, checksum in rows:
                    mid = explicit_id if explicit_id is not None else next_id
                    try:
                        db.execute(
                            "INSERT INTO messages(sid, id, ts, size, meta, inline, seg, off, xxh) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (sid, mid, now, size, meta_text, inline, seg_id, off, checksum),
                        )
                    except sqlite3.IntegrityError:
                        old = db.execute(
                            "SELECT size, meta FROM messages WHERE sid=? AND id=?", (sid, mid)
                        ).fetchone()
                        if old is not None and old[0] == size and old[1] == meta_text:
                            ids.append(mid)  # a retried send of the same message: keep one
                            continue
                        raise DuplicateId(
                            f"stream {stream!r} of data source {self.data_source!r} already "
                            f"holds a different message {mid}"
                        ) from None
                    ids.append(mid)
                    added, added_bytes = added + 1, added_bytes + size
                    next_id = max(next_id, mid) + 1
                db.execute(
                    "UPDATE streams SET last_id=max(last_id, ?), last_ts=?, "
                    "n_messages=n_messages+?, n_bytes=n_bytes+? WHERE sid=?",
                    (max(ids), now, added, added_bytes, sid),
                )
            return ids
        raise TransportError(f"stream {stream!r} was dropped repeatedly while sending")

    @_guarded
    def finish_stream(
        self, stream: str, *, last_id: int | None = None, next_stream: str | None = None
    ) -> None:
        check_stream(stream)
        if next_stream is not None:
            check_stream(next_stream)
        seg = self._segments.pop(stream, None)
        if seg is not None:
            # a finished stream gets no more payloads in this segment (a late message opens
            # a new one); an open descriptor would keep its bytes on disk after retention
            os.close(seg.fd)
        with self._src.write() as db:
            sid = self._src.sid(stream, create=True)
            db.execute(
                "UPDATE streams SET finished=1, finish_id=coalesce(?, last_id), next_stream=?, "
                "last_id=max(last_id, coalesce(?, 0)), last_ts=coalesce(last_ts, ?) WHERE sid=?",
                (last_id, next_stream, last_id, time.time(), sid),
            )

    @_guarded
    def set_stream_metadata(self, stream: str, metadata: Mapping[str, Any]) -> None:
        check_stream(stream)
        text = encode_metadata(metadata, "stream metadata")
        with self._src.write() as db:
            sid = self._src.sid(stream, create=True)
            db.execute("UPDATE streams SET meta=? WHERE sid=?", (text, sid))

    @_guarded
    def set_source_metadata(self, metadata: Mapping[str, Any]) -> None:
        text = encode_metadata(metadata, "data source metadata")
        with self._src.write() as db:
            db.execute("INSERT OR REPLACE INTO source_meta(k, meta) VALUES (0, ?)", (text,))

    def flush(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: every send is stored when it returns."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for seg in self._segments.values():
            os.close(seg.fd)
        self._segments.clear()
        self._src.close()


#: (finished and drained for the group, next stream, next lease due)
_Finished = tuple[bool, str | None, float]
_NOT_FINISHED: _Finished = (False, None, float("inf"))


class EmbeddedConsumer(Consumer):
    def __init__(
        self,
        transport: EmbeddedTransport,
        data_source: str,
        group: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        prefetch: int = 1,
    ) -> None:
        self.data_source = data_source
        self.group = check_group(group)
        if lease_seconds <= 0:
            raise TransportConfigError(f"lease_seconds must be positive, got {lease_seconds}")
        self.lease_seconds = float(lease_seconds)
        self.prefetch = max(1, int(prefetch))
        self._src = _SourceDB(
            transport.root,
            data_source,
            fsync=transport.fsync,
            create=True,
            cache_sids=False,
            read_only=transport.read_only,
        )
        self._fds: dict[int, int] = {}
        self._seg_paths: dict[int, str] = {}
        # messages claimed in one transaction but not yet handed out, with their lease's due
        # time and, for payloads in files, what to read when the message is handed out
        self._buffer: dict[str, deque[tuple[float, Message, _Lazy | None]]] = {}
        # stream -> (data_version, next due) of the last empty claim: skip pointless claims
        self._idle: dict[str, tuple[int, float]] = {}
        self._waker = _Waker(self._src.dir)
        self._retention = transport.retention
        self._done: set[str] = set()
        self._closed = False

    # -- reading payloads ------------------------------------------------------------------
    def _fd(self, seg: int, stream: str, mid: int) -> int:
        fd = self._fds.get(seg)
        if fd is not None:
            return fd
        rel = self._seg_paths.get(seg)
        if rel is None:
            row = self._src.db.execute("SELECT path FROM segments WHERE seg=?", (seg,)).fetchone()
            if row is None:
                raise MissingId(self._where(stream, mid) + " lost its payload segment (pruned?)")
            rel = self._seg_paths[seg] = str(row[0])
        try:
            fd = os.open(self._src.dir / rel, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MissingId(
                self._where(stream, mid) + " has no payload file any more (pruned?)"
            ) from None
        if len(self._fds) >= 64:
            old_seg, old_fd = next(iter(self._fds.items()))
            del self._fds[old_seg]
            os.close(old_fd)
        self._fds[seg] = fd
        return fd

    def _payload(
        self,
        stream: str,
        mid: int,
        size: int,
        inline: bytes | None,
        seg: int | None,
        off: int,
        xxh: int | None,
    ) -> memoryview | bytes | None:
        if inline is not None:
            if not _intact(inline, xxh):
                raise self._damaged(stream, mid, None)
            return inline
        if seg is None:
            return None
        fd = self._fd(seg, stream, mid)
        if size >= MMAP_MIN:
            start = off - off % mmap.ALLOCATIONGRANULARITY
            try:
                mm = mmap.mmap(
                    fd,
                    size + (off - start),
                    flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                    prot=mmap.PROT_READ,
                    offset=start,
                )
            except ValueError:
                raise CorruptPayload(
                    self._where(stream, mid) + f": its payload file is shorter than the "
                    f"{size} bytes recorded"
                ) from None
            data: memoryview | bytes = memoryview(mm)[off - start : off - start + size]
        else:
            data = os.pread(fd, size, off)
            if len(data) != size:
                raise CorruptPayload(
                    self._where(stream, mid)
                    + f": its payload file holds {len(data)} of the {size} bytes recorded"
                )
        # hashed in place (the mapped pages or the bytes read), no copy
        if not _intact(data, xxh):
            raise self._damaged(stream, mid, seg)
        return data

    def _damaged(self, stream: str, mid: int, seg: int | None) -> CorruptPayload:
        """A payload whose bytes differ from the checksum written with them, in one sentence."""
        where = self._src.dir / (INDEX_NAME if seg is None else self._seg_paths[seg])
        return CorruptPayload(
            self._where(stream, mid) + f": its payload in {where} does not match the checksum "
            "written with it, so the store is damaged"
        )

    def _where(self, stream: str, mid: int) -> str:
        return f"message {mid} of stream {stream!r} in data source {self.data_source!r}"

    def _message(self, stream: str, row: tuple, count: int) -> Message:
        mid, ts, size, meta, inline, seg, off, xxh = row
        try:
            metadata = {} if meta == "{}" else decode_metadata(meta)
        except ValueError:
            raise CorruptPayload(self._where(stream, mid) + " has unreadable metadata") from None
        msg = Message(
            data_source=self.data_source,
            stream=stream,
            id=mid,
            payload=None,
            metadata=metadata,
            delivery_count=count,
            timestamp=ts,
        )
        self._fill(msg, size, inline, seg, off, xxh)
        return msg

    def _fill(
        self, msg: Message, size: int, inline: Any, seg: int | None, off: Any, xxh: int | None
    ) -> None:
        """Read `msg`'s payload into it. A payload gone, cut short or not matching its checksum
        is handed out as damaged (`CorruptPayload.damaged`): its metadata (provenance keys) is
        still good, readers that need only that use it, and a worker reports and acknowledges it
        instead of meeting it again and again."""
        try:
            msg.payload = self._payload(msg.stream, msg.id, size, inline, seg, off, xxh)
        except (MissingId, CorruptPayload) as exc:
            raise CorruptPayload(str(exc), damaged=msg) from None

    # -- group delivery --------------------------------------------------------------------
    def _claim(self, stream: str) -> tuple[list[tuple[float, tuple, int]], _Finished]:
        """Lease up to `prefetch` messages to this consumer, and, when there is none now, whether
        the stream is finished for this group, decided in the same transaction: a producer
        that writes its last messages and finishes the stream between a claim that found
        nothing and a separate look at the stream must not make them look delivered."""
        now = time.time()
        due = now + self.lease_seconds
        with self._src.write() as db:
            sid = self._src.sid(stream, create=False)
            if sid is None:
                return [], _NOT_FINISHED
            out = self._lease(db, sid, now, due)
            # a window of fresh rows this group had all acknowledged (a redelivery after a
            # restart) leases nothing, though later rows may wait: look past it
            while not out and self._unleased(db, sid):
                out = self._lease(db, sid, now, due)
            return out, (_NOT_FINISHED if out else self._finished_in(db, sid))

    def _unleased(self, db: sqlite3.Connection, sid: int) -> bool:
        """Whether the stream holds rows past this group's cursor."""
        return (
            db.execute(
                "SELECT 1 FROM messages WHERE sid=? AND seq>coalesce((SELECT seq FROM cursors "
                "WHERE grp=? AND sid=?), 0) LIMIT 1",
                (sid, self.group, sid),
            ).fetchone()
            is not None
        )

    def _lease(
        self, db: sqlite3.Connection, sid: int, now: float, due: float
    ) -> list[tuple[float, tuple, int]]:
        """Inside a write transaction: expired leases of this group first, then fresh messages
        past its cursor."""
        grp = self.group
        out: list[tuple[float, tuple, int]] = []
        expired = db.execute(
            "SELECT id, count FROM inflight WHERE grp=? AND sid=? AND due<=? ORDER BY due LIMIT ?",
            (grp, sid, now, self.prefetch),
        ).fetchall()
        for mid, count in expired:
            db.execute(
                "UPDATE inflight SET due=?, count=? WHERE grp=? AND sid=? AND id=?",
                (due, count + 1, grp, sid, mid),
            )
            row = db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE sid=? AND id=?", (sid, mid)
            ).fetchone()
            if row is None:  # pruned meanwhile
                db.execute("DELETE FROM inflight WHERE grp=? AND sid=? AND id=?", (grp, sid, mid))
                continue
            out.append((due, row, count + 1))
        want = self.prefetch - len(out)
        if want > 0:
            cur = db.execute("SELECT seq FROM cursors WHERE grp=? AND sid=?", (grp, sid)).fetchone()
            cursor = int(cur[0]) if cur else 0
            fresh = db.execute(
                f"SELECT seq, {_MSG_COLS} FROM messages WHERE sid=? AND seq>? ORDER BY seq LIMIT ?",
                (sid, cursor, want),
            ).fetchall()
            if fresh:
                last_seq = fresh[-1][0]
                rows = [r[1:] for r in fresh]
                acked = {
                    a[0]
                    for a in db.execute(
                        "SELECT id FROM acks WHERE grp=? AND sid=? AND id BETWEEN ? AND ?",
                        (grp, sid, min(r[0] for r in rows), max(r[0] for r in rows)),
                    )
                }
                rows = [r for r in rows if r[0] not in acked]
                db.executemany(
                    "INSERT OR IGNORE INTO inflight(grp, sid, id, due, count) "
                    "VALUES (?, ?, ?, ?, 1)",
                    [(grp, sid, r[0], due) for r in rows],
                )
                db.execute(
                    "INSERT INTO cursors(grp, sid, seq) VALUES (?, ?, ?) "
                    "ON CONFLICT(grp, sid) DO UPDATE SET seq=excluded.seq",
                    (grp, sid, last_seq),
                )
                out.extend((due, r, 1) for r in rows)
        return out

    def _finished_in(self, db: sqlite3.Connection, sid: int) -> _Finished:
        """Inside the claim's transaction, after it leased nothing and nothing is past the
        cursor: (finished and nothing of this group in flight, next stream, next lease due)."""
        finished, next_stream = db.execute(
            "SELECT finished, next_stream FROM streams WHERE sid=?", (sid,)
        ).fetchone()
        next_due = db.execute(
            "SELECT min(due) FROM inflight WHERE grp=? AND sid=?", (self.group, sid)
        ).fetchone()[0]
        drained = bool(finished) and next_due is None
        return drained, next_stream, float("inf") if next_due is None else float(next_due)

    def _data_version(self) -> int:
        with self._src.lock:
            return int(self._src.db.execute("PRAGMA data_version").fetchone()[0])

    @_guarded
    def get_next(self, stream: str, *, timeout: float = 0.0) -> Message:
        self._check_open()
        check_stream(stream)
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.0005
        buffer = self._buffer.setdefault(stream, deque())
        while True:
            while buffer:
                due, msg, lazy = buffer.popleft()
                # a prefetched message whose lease ran out may be with another consumer now
                if time.time() < due - LEASE_MARGIN * self.lease_seconds:
                    if lazy is not None:
                        lazy.load(msg)
                    return msg
            self._waker.drain()
            idle = self._idle.get(stream)
            version = self._data_version()
            if idle is None or idle[0] != version or time.time() >= idle[1]:
                # the version is read before the claim: a commit racing with it changes the
                # version and so is never mistaken for "nothing new"
                claimed, (drained, next_stream, next_due) = self._claim(stream)
                if claimed:
                    self._idle.pop(stream, None)
                    for due, row, count in claimed:
                        buffer.append((due, *self._lazy_message(stream, row, count)))
                    continue
                if drained:
                    self._forget_payloads(stream)
                    raise StreamFinished(
                        f"stream {stream!r} of data source {self.data_source!r} is finished"
                        + (f"; next stream is {next_stream!r}" if next_stream else ""),
                        next_stream,
                    )
                self._idle[stream] = (version, next_due)
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoData(
                    f"no new message in stream {stream!r} of data source "
                    f"{self.data_source!r} for group {self.group!r}"
                )
            idle = self._idle.get(stream)
            if idle is not None:
                left = min(left, max(0.0, idle[1] - time.time()))
            pause = self._waker.wait(left, pause)

    def _forget_payloads(self, stream: str) -> None:
        """This group is done with a stream: close its segment files (removed payloads must
        not be held on disk by open descriptors) and apply the store's retention policy."""
        if stream in self._done:
            return
        self._done.add(stream)
        with self._src.lock:
            sid = self._src.sid(stream, create=False)
        prefix = f"payloads/{sid}/"
        for seg, rel in list(self._seg_paths.items()):
            if rel.startswith(prefix):
                fd = self._fds.pop(seg, None)
                if fd is not None:
                    os.close(fd)
                del self._seg_paths[seg]
        if self._retention is not None:
            apply_retention(self._src, self._retention)

    def wake_fd(self) -> int | None:
        # inotify on the data source's directory: every commit to its index (a new message,
        # a finished stream) makes it readable; `get_next` drains it before it looks
        return self._waker.fd if self._waker.fd >= 0 else None

    def _lazy_message(self, stream: str, row: tuple, count: int) -> tuple[Message, _Lazy | None]:
        # metadata now, payload when handed out: a prefetched message maps nothing until used;
        # an inline payload is checked now, and one that fails is failed when handed out (not
        # here, where it would drop the rest of the claimed batch until their leases ran out)
        mid, ts, size, meta, inline, seg, off, xxh = row
        if seg is None and (inline is None or _intact(inline, xxh)):
            msg = self._message(stream, (mid, ts, size, meta, inline, None, None, None), count)
            return msg, None
        msg = self._message(stream, (mid, ts, size, meta, None, None, None, None), count)
        return msg, _Lazy(self, size, inline, seg, off, xxh)

    def acknowledge(self, stream: str, id: int) -> None:
        self.acknowledge_many(stream, (id,))

    @_guarded
    def acknowledge_many(self, stream: str, ids: Iterable[int]) -> None:
        self._check_open()
        check_stream(stream)
        ids = list(ids)
        if not ids:
            return
        now = time.time()
        grp = self.group
        with self._src.write() as db:
            sid = self._src.sid(stream, create=False)
            if sid is None:
                raise MissingId(
                    f"cannot acknowledge message {ids[0]}: stream {stream!r} does not exist "
                    f"in data source {self.data_source!r}"
                )
            gone = db.executemany(
                "DELETE FROM inflight WHERE grp=? AND sid=? AND id=?",
                [(grp, sid, mid) for mid in ids],
            ).rowcount
            if gone != len(set(ids)):
                # some were not in flight: fine if they exist (acked before, or never taken)
                for mid in ids:
                    if (
                        db.execute(
                            "SELECT 1 FROM messages WHERE sid=? AND id=?", (sid, mid)
                        ).fetchone()
                        is None
                    ):
                        raise MissingId(
                            f"cannot acknowledge {self._where(stream, mid)}: no such id"
                        )
            added = db.executemany(
                "INSERT OR IGNORE INTO acks(grp, sid, id, ts) VALUES (?, ?, ?, ?)",
                [(grp, sid, mid, now) for mid in ids],
            ).rowcount
            if added:
                db.execute(
                    "INSERT INTO cursors(grp, sid, seq, n_acked, last_ack) VALUES (?, ?, 0, ?, ?) "
                    "ON CONFLICT(grp, sid) DO UPDATE SET n_acked=n_acked+excluded.n_acked, "
                    "last_ack=excluded.last_ack",
                    (grp, sid, added, now),
                )
        # what made this consumer idle (its own messages in flight) may be gone now: look again
        # instead of waiting for the lease, so a drained stream is seen as finished at once
        self._idle.pop(stream, None)

    @_guarded
    def nack(self, stream: str, id: int, delay: float = 0.0) -> None:
        self._check_open()
        check_stream(stream)
        with self._src.write() as db:
            sid = self._src.sid(stream, create=False)
            if sid is None:
                raise MissingId(f"cannot nack {self._where(stream, id)}: no such stream")
            db.execute(
                "UPDATE inflight SET due=? WHERE grp=? AND sid=? AND id=?",
                (time.time() + max(0.0, delay), self.group, sid, id),
            )
        self._idle.pop(stream, None)

    @_guarded
    @_guarded
    def lost_leases(self, stream: str, held: Mapping[int, int]) -> set[int]:
        # a message this consumer still holds has its in-flight row, with the delivery count
        # it was handed out with: a claim by another consumer raised it, an acknowledgement
        # removed the row
        ids = list(held)
        found: dict[int, int] = {}
        with self._src.lock:
            sid = self._src.sid(stream, create=False)
            for i in range(0, len(ids) if sid is not None else 0, _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                found.update(
                    self._src.db.execute(
                        "SELECT id, count FROM inflight WHERE grp=? AND sid=? AND id IN "
                        f"({','.join('?' * len(chunk))})",
                        (self.group, sid, *chunk),
                    ).fetchall()
                )
        return {mid for mid, count in held.items() if found.get(mid) != count}

    def extend_lease(self, stream: str, id: int, seconds: float | None = None) -> None:
        """Keep a message that takes long to process from being delivered to another consumer."""
        with self._src.write() as db:
            sid = self._src.sid(stream, create=False)
            if sid is not None:
                db.execute(
                    "UPDATE inflight SET due=? WHERE grp=? AND sid=? AND id=?",
                    (time.time() + (seconds or self.lease_seconds), self.group, sid, id),
                )

    # -- random access ---------------------------------------------------------------------
    def _poll(self, stream: str, timeout: float, fetch: Any) -> Message:
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.0005
        while True:
            self._waker.drain()
            try:
                return fetch()
            except (EndOfStream, MissingId, NoData):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                pause = self._waker.wait(left, pause)

    @_guarded
    def get_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        return self._by_id(stream, id, timeout, with_payload=True)

    @_guarded
    def get_metadata_by_id(self, stream: str, id: int, *, timeout: float = 0.0) -> Message:
        # the index row alone: no segment file mapped, no payload hashed
        return self._by_id(stream, id, timeout, with_payload=False)

    def _by_id(self, stream: str, id: int, timeout: float, *, with_payload: bool) -> Message:
        self._check_open()
        check_stream(stream)

        def fetch() -> Message:
            with self._src.lock:
                sid = self._src.sid(stream, create=False)
                row = None
                if sid is not None:
                    row = self._src.db.execute(
                        f"SELECT {_MSG_COLS} FROM messages WHERE sid=? AND id=?", (sid, id)
                    ).fetchone()
                    state = self._src.db.execute(
                        "SELECT last_id, finished, finish_id, next_stream FROM streams WHERE sid=?",
                        (sid,),
                    ).fetchone()
            if row is not None:
                if with_payload:
                    return self._message(stream, row, 0)
                msg = self._message(stream, row[:4] + _NO_PAYLOAD, 0)
                if row[7] is not None:  # a payload written before checksums were kept: None
                    msg.checksum = f"xxh3_64:{row[7] & _U64:016x}"
                return msg
            if sid is None:
                raise EndOfStream(
                    f"stream {stream!r} of data source {self.data_source!r} has no message "
                    f"{id} yet (the stream is empty)"
                )
            last_id, finished, finish_id, next_stream = state
            if finished and finish_id is not None and id > finish_id:
                raise StreamFinished(
                    f"stream {stream!r} of data source {self.data_source!r} finished at "
                    f"id {finish_id}; there is no message {id}",
                    next_stream,
                )
            if id < last_id:
                raise MissingId(f"{self._where(stream, id)} does not exist (a hole)")
            raise EndOfStream(f"{self._where(stream, id)} was not written yet")

        return self._poll(stream, timeout, fetch)

    @_guarded
    def get_last(self, stream: str, *, timeout: float = 0.0) -> Message:
        self._check_open()
        check_stream(stream)

        def fetch() -> Message:
            with self._src.lock:
                sid = self._src.sid(stream, create=False)
                row = None
                if sid is not None:
                    row = self._src.db.execute(
                        f"SELECT {_MSG_COLS} FROM messages WHERE sid=? ORDER BY id DESC LIMIT 1",
                        (sid,),
                    ).fetchone()
            if row is None:
                raise EndOfStream(
                    f"stream {stream!r} of data source {self.data_source!r} has no message yet"
                )
            return self._message(stream, row, 0)

        return self._poll(stream, timeout, fetch)

    # -- information -----------------------------------------------------------------------
    @_guarded
    def streams(self) -> list[StreamInfo]:
        self._check_open()
        return stream_infos(self._src)

    @_guarded
    def stream_info(self, stream: str) -> StreamInfo:
        self._check_open()
        check_stream(stream)
        for info in stream_infos(self._src, only=stream):
            return info
        return StreamInfo(name=stream)

    @_guarded
    def get_stream_metadata(self, stream: str) -> dict[str, Any]:
        with self._src.lock:
            row = self._src.db.execute(
                "SELECT meta FROM streams WHERE name=?", (stream,)
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    @_guarded
    def get_source_metadata(self) -> dict[str, Any]:
        with self._src.lock:
            row = self._src.db.execute("SELECT meta FROM source_meta WHERE k=0").fetchone()
        return json.loads(row[0]) if row else {}

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"consumer of data source {self.data_source!r} is closed")

    def release(self) -> None:
        """Give back the messages leased in advance (prefetched) but not handed out: they go to
        the group's next taker at once instead of after their lease (a worker stopping with a
        batch's worth of messages claimed must not leave them stuck for the lease)."""
        held = {s: [m.id for _due, m, _lazy in b] for s, b in self._buffer.items() if b}
        self._buffer.clear()
        if not held:
            return
        with self._src.write() as db:
            for stream, ids in held.items():
                sid = self._src.sid(stream, create=False)
                if sid is None:
                    continue
                # only what is still leased (not acknowledged meanwhile) goes back; the due
                # times keep the stream's order (expired leases are claimed by due time)
                db.executemany(
                    "UPDATE inflight SET due=? WHERE grp=? AND sid=? AND id=?",
                    [(n * 1e-6, self.group, sid, mid) for n, mid in enumerate(ids)],
                )
        self._idle.clear()

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(sqlite3.Error, OSError, TransportError):
            self.release()  # best effort: otherwise their lease brings them back
        self._closed = True
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._buffer.clear()
        self._waker.close()
        self._src.close()


class _Lazy:
    """A payload in a segment file (or an inline one that failed its checksum), read when its
    message is handed out."""

    __slots__ = ("consumer", "inline", "off", "seg", "size", "xxh")

    def __init__(
        self,
        consumer: EmbeddedConsumer,
        size: int,
        inline: bytes | None,
        seg: int | None,
        off: int | None,
        xxh: int | None,
    ) -> None:
        self.consumer, self.size, self.inline = consumer, size, inline
        self.seg, self.off, self.xxh = seg, off, xxh

    def load(self, msg: Message) -> None:
        self.consumer._fill(msg, self.size, self.inline, self.seg, self.off, self.xxh)


def _counted(db: sqlite3.Connection, sid: int) -> tuple[int, int]:
    """A stream's messages and payload bytes counted from its rows. Asked only when the totals
    show a finished stream with holes: rare (late messages), and what totals too low would look
    like if a process of an older release (which kept none) wrote into the store, so such a
    stream is never waited for, nor removed, on the totals' word alone."""
    count, size = db.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE sid=?", (sid,)
    ).fetchone()
    return int(count), int(size)


def stream_infos(src: _SourceDB, only: str | None = None) -> list[StreamInfo]:
    db = src.db
    with src.lock:
        where, args = ("WHERE name=?", (only,)) if only is not None else ("", ())
        streams = db.execute(
            "SELECT sid, name, created, last_ts, last_id, finished, next_stream, n_messages, "
            f"n_bytes FROM streams {where} ORDER BY created, sid",
            args,
        ).fetchall()
        infos = []
        for sid, name, created, last_ts, last_id, finished, next_stream, count, size in streams:
            if finished and count < last_id:
                count, size = _counted(db, sid)
            lag = {
                grp: max(0, int(count) - int(acked))
                for grp, acked in db.execute(
                    "SELECT grp, n_acked FROM cursors WHERE sid=?", (sid,)
                ).fetchall()
            }
            infos.append(
                StreamInfo(
                    name=name,
                    last_id=int(last_id),
                    finished=bool(finished),
                    next_stream=next_stream,
                    created=created,
                    last_timestamp=last_ts,
                    message_count=int(count),
                    size_bytes=int(size),
                    group_lag=lag,
                )
            )
    return infos


def _unreadable_payloads(src: _SourceDB) -> dict[str, int]:
    """stream -> how many of its messages have a payload file that is gone or shorter than
    the bytes recorded in it (deleted, cut short): known from each segment file's size, with
    no payload read, so that listing a large store stays cheap. Bytes changed in place are
    found only by reading them (the checksum), as `pipeline tail` does."""
    db = src.db
    with src.lock:
        rows = db.execute(
            "SELECT s.name, m.seg, g.path, MAX(m.off + m.size), COUNT(*) FROM messages m "
            "JOIN segments g ON g.seg = m.seg JOIN streams s ON s.sid = m.sid "
            "WHERE m.seg IS NOT NULL GROUP BY m.seg"
        ).fetchall()
        out: dict[str, int] = {}
        for stream, seg, rel, end, count in rows:
            try:
                held = (src.dir / rel).stat().st_size
            except FileNotFoundError:
                held = 0
            if held >= int(end):
                continue
            if held:  # cut short: only the messages past its end
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM messages WHERE seg=? AND off + size > ?", (seg, held)
                ).fetchone()
            out[stream] = out.get(stream, 0) + int(count)
    return out


@dataclass(frozen=True)
class Retention:
    """What the store keeps of streams that are done: finished, without holes, and fully
    acknowledged by every consumer group that reads their data source (a group reads a data
    source once it has taken a message of any of its streams). Done streams are removed with
    their payloads, oldest first (by their last acknowledgement), when any limit is passed:

    - `max_age`: seconds since the last acknowledgement;
    - `max_bytes`: payload bytes of the done streams kept, per data source;
    - `max_streams`: number of done streams kept, per data source.

    Streams that are not done are never removed, whatever their size.
    """

    max_age: float | None = None
    max_bytes: int | None = None
    max_streams: int | None = None

    @classmethod
    def of(cls, value: Retention | Mapping[str, Any] | None) -> Retention | None:
        if value is None or isinstance(value, Retention):
            return value
        if not isinstance(value, Mapping):
            raise TransportConfigError("retention is given as {max_age, max_bytes, max_streams}")
        extra = sorted(set(value) - {"max_age", "max_bytes", "max_streams"})
        if extra:
            raise TransportConfigError(
                f"unknown retention option(s): {', '.join(extra)}; "
                "choose from max_age, max_bytes, max_streams"
            )
        for key, limit in value.items():
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0
            ):
                raise TransportConfigError(f"retention {key} must be a number >= 0, got {limit!r}")
        policy = cls(**dict(value))
        if policy.max_age is None and policy.max_bytes is None and policy.max_streams is None:
            return None
        return policy


def done_streams(db: sqlite3.Connection) -> list[tuple[int, float, int]]:
    """(sid, time of the last acknowledgement, payload bytes) of the streams that are done,
    oldest first."""
    readers = [r[0] for r in db.execute("SELECT DISTINCT grp FROM cursors").fetchall()]
    if not readers:
        return []
    out = []
    for sid, last_id, count, size in db.execute(
        "SELECT sid, last_id, n_messages, n_bytes FROM streams WHERE finished=1 ORDER BY sid"
    ).fetchall():
        if count < last_id:
            count, size = _counted(db, sid)
        if count < last_id:
            continue  # holes: late messages may still come
        if db.execute("SELECT 1 FROM inflight WHERE sid=? LIMIT 1", (sid,)).fetchone():
            continue
        last_ack = 0.0
        for grp in readers:
            acked, at = db.execute(
                "SELECT n_acked, last_ack FROM cursors WHERE grp=? AND sid=?", (grp, sid)
            ).fetchone() or (0, None)
            if acked < count:
                break
            last_ack = max(last_ack, float(at or 0.0))
        else:
            out.append((int(sid), last_ack, int(size)))
    out.sort(key=lambda item: (item[1], item[0]))
    return out


def apply_retention(src: _SourceDB, policy: Retention, now: float | None = None) -> int:
    """Remove the done streams of one data source that the policy does not keep; returns the
    payload bytes freed."""
    now = time.time() if now is None else now
    dropped: list[tuple[int, list[str]]] = []
    with src.write() as db:
        done = done_streams(db)
        kept_bytes = sum(size for _, _, size in done)
        kept = len(done)
        for sid, last_ack, size in done:
            old = policy.max_age is not None and now - last_ack > policy.max_age
            many = policy.max_streams is not None and kept > policy.max_streams
            big = policy.max_bytes is not None and kept_bytes > policy.max_bytes
            if not (old or many or big):
                continue
            dropped.append((sid, _drop_stream(db, sid)))
            kept -= 1
            kept_bytes -= size
    for sid, _paths in dropped:
        src.forget_sid(sid)
    return sum(_remove_payloads(src.dir, sid, paths) for sid, paths in dropped)


def check_store_path(root: Path) -> None:
    """Refuse a store path that names a file, or lies under one: the one sentence every
    command says for it (opening, creating or listing the store would each fail in its own
    words, or take the missing `store.json` for a store no run has made yet)."""
    why = storage.not_a_directory(root, "the embedded store", "the embedded transport's `path`")
    if why is not None:
        raise TransportConfigError(why)


def _garbled_marker(marker: Path, why: object) -> str:
    """What to do about a `store.json` that is no JSON object: it only marks the folder as a
    store of this format (the data sources keep their own indexes), so writing it again loses
    nothing."""
    written = json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION})
    return (
        f"the embedded store's marker {marker} is unreadable ({why}); it only says the folder "
        f"holds a store of this format, and nothing else is kept in it: write it again as "
        f"{written} to read the store as before"
    )


class EmbeddedTransport(Transport):
    """The store in directory ``path`` (created when missing unless ``create=False``).

    ``read_only=True`` opens an existing store for reading alone (`pipeline runs`, `tail`,
    `streams`): consumers read by id and list streams; nothing is written, not even the
    write lock, so a store archived on a read-only file system can be inspected. Producers,
    group delivery and pruning are refused."""

    kind = "embedded"
    separate_store = "path"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        fsync: bool = False,
        retention: Retention | Mapping[str, Any] | None = None,
        read_only: bool = False,
    ):
        self.root = Path(path).expanduser().absolute()
        self.local_root = self.root
        self.fsync = bool(fsync)
        self.retention = Retention.of(retention)
        self.read_only = bool(read_only)
        marker = self.root / "store.json"
        if not marker.exists():
            check_store_path(self.root)
            if not create:
                raise TransportConfigError(f"no embedded transport store at {self.root}")
            if self.read_only:
                return  # read as the empty store a writer would have made: nothing is made

            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = self.root / f".store.json.{os.getpid()}"
                tmp.write_text(json.dumps({"format": STORE_FORMAT, "version": STORE_VERSION}))
                os.replace(tmp, marker)
            except OSError as exc:
                raise StorageError(
                    storage.describe("creating the store", self.root, exc), storage.kind_of(exc)
                ) from None
        else:
            try:
                info = json.loads(marker.read_text())
            except OSError as exc:
                kind = _kind_in_store(marker, exc)
                raise StorageError(
                    storage.describe("the store", marker, kind=kind, exc=exc), kind
                ) from None
            except ValueError as exc:
                raise TransportConfigError(_garbled_marker(marker, exc)) from None
            if not isinstance(info, dict):
                raise TransportConfigError(_garbled_marker(marker, "not a JSON object"))
            if info.get("format") != STORE_FORMAT or info.get("version") != STORE_VERSION:
                raise TransportConfigError(
                    f"{self.root} holds a store of another format or version ({info}); "
                    f"this version reads {STORE_FORMAT} version {STORE_VERSION}"
                )

    def producer(self, data_source: str) -> EmbeddedProducer:
        if self.read_only:
            raise TransportError(f"the store at {self.root} is open for reading only")
        return EmbeddedProducer(self, check_source(data_source))

    def consumer(
        self,
        data_source: str,
        group: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        prefetch: int = 1,
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(
            self, check_source(data_source), group, lease_seconds=lease_seconds, prefetch=prefetch
        )

    def data_sources(self) -> list[str]:
        if self.read_only and not self.root.exists():
            return []  # a store no one has made yet, read without making it
        try:
            return sorted(p.name for p in self.root.iterdir() if _holds_index(p))
        except OSError as exc:
            raise StorageError(
                storage.describe("the store", self.root, exc), storage.kind_of(exc)
            ) from None

    def lost_data_sources(self) -> list[str]:
        """The data sources whose index is gone or empty while they held data (`_lost_index`).
        Not among `data_sources`: listed there, one such folder made `pipeline streams` and
        every `prune` fail for the whole store, also after `--fresh` had left its run behind."""
        if not self.root.exists():
            return []
        try:
            found = [p.name for p in self.root.iterdir() if (p / MADE_NAME).exists()]
        except OSError as exc:
            raise StorageError(
                storage.describe("the store", self.root, exc), storage.kind_of(exc)
            ) from None
        return sorted(n for n in found if _lost_index(self.root, n) is not None)

    def lost_index(self, data_source: str) -> IndexLost | None:
        """The `IndexLost` sentence of a data source whose index is gone while it held data;
        None for any other (`lost_data_sources`)."""
        return _lost_index(self.root, check_source(data_source))

    def check_data_source(self, data_source: str) -> None:
        """Refuse (`IndexLost`) a data source whose index is gone while it held data, without
        opening it: what a run about to go on checks of the sources it will use, so that it
        is refused before any worker starts rather than when one of them opens the source."""
        lost = self.lost_index(data_source)
        if lost is not None:
            raise lost

    def drop_lost_source(self, data_source: str) -> int:
        """Remove the folder of a data source whose index was lost (`lost_data_sources`): what
        `pipeline prune --run` does with a run left behind by `pipeline run --fresh`, which
        no other command can read or prune. The bytes of payload files freed. Any other data
        source is refused: `drop_source` removes a healthy one once its streams are dropped."""
        if self.read_only:
            raise TransportError(f"the store at {self.root} is open for reading only")
        if self.lost_index(data_source) is None:
            raise TransportConfigError(f"the index of data source {data_source!r} is not lost")
        directory = self.root / data_source
        # no opener writes into it meanwhile: each one finds it lost and refuses it
        try:
            freed = sum(p.stat().st_size for p in (directory / "payloads").glob("*/*.seg"))
            shutil.rmtree(directory)
        except OSError as exc:
            raise _storage_error(data_source, directory, exc) from None
        return freed

    def describe(self) -> dict[str, list[StreamInfo]]:
        """Every data source with its streams, counts, sizes and group lags."""
        out: dict[str, list[StreamInfo]] = {}
        for name in self.data_sources():
            src = _SourceDB(self.root, name, fsync=False, create=False, read_only=self.read_only)
            try:
                out[name] = stream_infos(src)
                damaged = _unreadable_payloads(src)
                for info in out[name]:
                    info.damaged = damaged.get(info.name, 0)
            except (sqlite3.DatabaseError, OSError) as exc:
                raise _storage_error(name, src.dir, exc) from None
            finally:
                src.close()
        return out

    def drop_stream(self, data_source: str, stream: str) -> int:
        """Delete a stream with its messages, group state and payload files; returns bytes."""
        src = _SourceDB(
            self.root,
            check_source(data_source),
            fsync=False,
            create=False,
            read_only=self.read_only,
        )
        try:
            with src.write() as db:
                sid = src.sid(stream, create=False)
                if sid is None:
                    raise TransportConfigError(
                        f"data source {data_source!r} has no stream {stream!r}"
                    )
                freed = _drop_stream(db, sid)
            return _remove_payloads(src.dir, sid, freed)
        finally:
            src.close()

    def drop_source(self, data_source: str) -> None:
        """Remove a data source that holds no streams (its streams dropped), so that listings no
        longer show it. A source that still holds a stream is refused: its messages would go."""
        src = _SourceDB(
            self.root,
            check_source(data_source),
            fsync=False,
            create=False,
            read_only=self.read_only,
        )
        try:
            with src.write() as db:
                if db.execute("SELECT 1 FROM streams LIMIT 1").fetchone():
                    raise TransportConfigError(
                        f"data source {data_source!r} still holds streams; drop them first"
                    )
                # unlisted at once (`data_sources` lists directories with an index), and while
                # the write lock keeps every writer of the source out; the marker first, so
                # that an opening in between makes a new source instead of finding one lost
                (src.dir / MADE_NAME).unlink(missing_ok=True)
                (src.dir / INDEX_NAME).unlink()
        finally:
            src.close()
        try:
            shutil.rmtree(src.dir)
        except OSError as exc:
            raise _storage_error(data_source, src.dir, exc) from None

    def prune(self, older_than: float, data_source: str | None = None) -> PruneReport:
        """Drop streams idle for longer than ``older_than`` seconds, and in other streams the
        payload segments and messages older than that."""
        if older_than < 0:
            raise TransportConfigError("the age limit must not be negative")
        cutoff = time.time() - older_than
        report = PruneReport([], 0, 0)
        names = [check_source(data_source)] if data_source else self.data_sources()
        for name in names:
            src = _SourceDB(self.root, name, fsync=False, create=False, read_only=self.read_only)
            try:
                dropped: list[tuple[int, list[str]]] = []
                with src.write() as db:
                    for sid, sname in db.execute(
                        "SELECT sid, name FROM streams WHERE coalesce(last_ts, created) < ?",
                        (cutoff,),
                    ).fetchall():
                        report.deleted_messages += db.execute(
                            "SELECT n_messages FROM streams WHERE sid=?", (sid,)
                        ).fetchone()[0]
                        dropped.append((sid, _drop_stream(db, sid)))
                        report.dropped_streams.append((name, sname))
                    # old segments of live streams: every message in them is older than cutoff
                    old_segs = db.execute(
                        "SELECT seg, path FROM segments s WHERE NOT EXISTS (SELECT 1 FROM "
                        "messages m WHERE m.seg=s.seg AND m.ts>=?) AND created < ?",
                        (cutoff, cutoff),
                    ).fetchall()
                    for seg, _path in old_segs:
                        db.execute("DELETE FROM segments WHERE seg=?", (seg,))
                    old_messages = _delete_old_messages(db, cutoff)
                    if old_messages:
                        _recount(db)
                    report.deleted_messages += old_messages
                for sid, paths in dropped:
                    report.freed_bytes += _remove_payloads(src.dir, sid, paths)
                for _seg, path in old_segs:
                    report.freed_bytes += _unlink(src.dir / path)
            finally:
                src.close()
        return report

    def close(self) -> None:
        """Producers and consumers own their connections; nothing is shared to close."""


def _drop_stream(db: sqlite3.Connection, sid: int) -> list[str]:
    paths = [r[0] for r in db.execute("SELECT path FROM segments WHERE sid=?", (sid,))]
    for table in ("messages", "segments", "cursors", "inflight", "acks"):
        db.execute(f"DELETE FROM {table} WHERE sid=?", (sid,))
    db.execute("DELETE FROM streams WHERE sid=?", (sid,))
    return paths


def _delete_old_messages(db: sqlite3.Connection, cutoff: float) -> int:
    # a message goes when it is old and its payload is inline, absent or in a deleted segment
    doomed = "m.ts < ? AND (m.seg IS NULL OR m.seg NOT IN (SELECT seg FROM segments))"
    for table in ("inflight", "acks"):
        db.execute(
            f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM messages m "
            f"WHERE m.sid={table}.sid AND m.id={table}.id AND {doomed})",
            (cutoff,),
        )
    return int(db.execute(f"DELETE FROM messages AS m WHERE {doomed}", (cutoff,)).rowcount)


def _unlink(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
        return size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise TransportConfigError(f"cannot delete {path}: {exc.strerror}") from None
        raise


def _remove_payloads(base: Path, sid: int, paths: list[str]) -> int:
    freed = sum(_unlink(base / p) for p in paths)
    with contextlib.suppress(OSError):
        (base / "payloads" / str(sid)).rmdir()
    return freed


def open_embedded(options: Mapping[str, Any]) -> EmbeddedTransport:
    """Runtime of the ``embedded`` transport (registered by `default_backends`): ``{path,
    fsync?, create?, retention?, read_only?}``."""
    options = dict(options)
    if "path" not in options:
        raise TransportConfigError("the embedded transport needs a path")
    path = options.pop("path")
    extra = sorted(set(options) - {"fsync", "create", "retention", "read_only"})
    if extra:
        raise TransportConfigError(
            f"unknown option{'s' if len(extra) > 1 else ''} for the embedded transport: "
            + ", ".join(extra)
        )
    return EmbeddedTransport(path, **options)
