"""The embedded store's running totals (index version 1): stream information reads per-stream
message counts and per-group acknowledgement counts kept with every write, instead of counting
rows each time. These tests compare what `streams()` reports with the rows themselves, counted
by SQLite at test time, after every kind of write, and check that a store written before the
totals existed is brought up to date when opened."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from asapo_pipelines.transport import NoData, StreamFinished, TransportConfigError, open_transport
from asapo_pipelines.transport.embedded import (
    INDEX_NAME,
    INDEX_VERSION,
    Retention,
    _SourceDB,
    apply_retention,
)

SOURCE = "scan"


def _open(path: Path, **extra):
    return open_transport({"embedded": {"path": str(path), **extra}})


def _index(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / SOURCE / INDEX_NAME)


def _counted(path: Path) -> dict[str, tuple[int, int, dict[str, int]]]:
    """Per stream: (messages, payload bytes, lag per group that took or acknowledged any),
    counted from the rows."""
    with _index(path) as db:
        out = {}
        for sid, name in db.execute("SELECT sid, name FROM streams"):
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE sid=?", (sid,)
            ).fetchone()
            groups = {
                g
                for (g,) in db.execute(
                    "SELECT grp FROM cursors WHERE sid=? UNION SELECT grp FROM acks WHERE sid=?",
                    (sid, sid),
                )
            }
            lag = {
                g: count
                - db.execute(
                    "SELECT count(*) FROM acks WHERE grp=? AND sid=?", (g, sid)
                ).fetchone()[0]
                for g in groups
            }
            out[name] = (count, size, lag)
        return out


def _reported(path: Path) -> dict[str, tuple[int, int, dict[str, int]]]:
    with _open(path) as t, t.consumer(SOURCE, "observer") as c:
        return {i.name: (i.message_count, i.size_bytes, dict(i.group_lag)) for i in c.streams()}


def _take(consumer, stream: str, n: int) -> list[int]:
    ids = []
    while len(ids) < n:
        try:
            ids.append(consumer.get_next(stream, timeout=1.0).id)
        except (NoData, StreamFinished):
            break
    return ids


def test_stream_information_matches_the_rows_after_every_kind_of_write(tmp_path):
    big = os.urandom(300_000)  # stored in a payload segment, not inline
    with _open(tmp_path) as t, t.producer(SOURCE) as p:
        p.send_many("a", [(b"x" * i, {"i": i}) for i in range(1, 40)])
        p.send("a", big, {"big": True})
        p.send("b", b"late", {"n": 5}, id=5)  # explicit ids, with holes
        p.send("b", b"late", {"n": 5}, id=5)  # a retried send of the same message adds nothing
        p.send("b", None, {"n": 2}, id=2)
        p.finish_stream("a")
        assert _reported(tmp_path) == _counted(tmp_path)

        with t.consumer(SOURCE, "fit") as fit, t.consumer(SOURCE, "plot") as plot:
            taken = _take(fit, "a", 25)
            fit.acknowledge_many("a", taken)
            fit.acknowledge_many("a", taken[:10])  # acknowledged twice: counted once
            plot.acknowledge("b", 5)  # acknowledged without taking
            plot.acknowledge_many("a", _take(plot, "a", 3))
            assert _reported(tmp_path) == _counted(tmp_path)
            reported = _reported(tmp_path)
            assert reported["a"][2]["fit"] == 40 - 25
            assert reported["b"][2]["plot"] == 1


def test_pruning_old_messages_of_live_streams_keeps_the_totals_right(tmp_path):
    with _open(tmp_path) as t, t.producer(SOURCE) as p, t.consumer(SOURCE, "fit") as c:
        p.send_many("live", [(b"old", {}) for _ in range(10)])
        c.acknowledge_many("live", _take(c, "live", 4))
        time.sleep(0.05)
        cutoff_age = 0.02
        time.sleep(cutoff_age)
        p.send_many("live", [(b"new", {}) for _ in range(3)])
        report = t.prune(cutoff_age, SOURCE)
    assert report.deleted_messages >= 10
    assert _reported(tmp_path) == _counted(tmp_path)


def test_retention_decides_from_the_totals(tmp_path):
    with _open(tmp_path) as t, t.producer(SOURCE) as p, t.consumer(SOURCE, "fit") as c:
        for name in ("s1", "s2", "s3"):
            p.send_many(name, [(b"y" * 100, {}) for _ in range(5)])
            p.finish_stream(name)
        c.acknowledge_many("s1", _take(c, "s1", 5))
        c.acknowledge_many("s2", _take(c, "s2", 4))  # one left: not done

    src = _SourceDB(tmp_path, SOURCE, fsync=False, create=False)
    try:
        freed = apply_retention(src, Retention(max_streams=0))
    finally:
        src.close()
    assert sorted(_counted(tmp_path)) == ["s2", "s3"]
    assert freed == 0  # s1's payloads were inline; what matters is which streams went
    assert _reported(tmp_path) == _counted(tmp_path)


def _as_before_the_totals(path: Path) -> None:
    """Rewrite an index into the layout of version 0 (no totals), as older releases left it."""
    with _index(path) as db:
        for table, column in (
            ("streams", "n_messages"),
            ("streams", "n_bytes"),
            ("cursors", "n_acked"),
            ("cursors", "last_ack"),
        ):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("PRAGMA user_version=0")


def test_a_store_written_before_the_totals_is_brought_up_to_date_when_opened(tmp_path):
    with _open(tmp_path) as t, t.producer(SOURCE) as p, t.consumer(SOURCE, "fit") as c:
        p.send_many("a", [(b"z" * i, {}) for i in range(1, 21)])
        p.finish_stream("a")
        c.acknowledge_many("a", _take(c, "a", 7))
    expected = _counted(tmp_path)
    _as_before_the_totals(tmp_path)
    assert _reported(tmp_path) == expected
    with _index(tmp_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
    # and it goes on counting from there
    with _open(tmp_path) as t, t.consumer(SOURCE, "fit") as c:
        c.acknowledge_many("a", _take(c, "a", 13))
    assert _reported(tmp_path)["a"][2]["fit"] == 0


def test_a_store_from_a_newer_release_is_one_sentence(tmp_path):
    with _open(tmp_path) as t, t.producer(SOURCE) as p:
        p.send("a", b"1", {})
    with _index(tmp_path) as db:
        db.execute(f"PRAGMA user_version={INDEX_VERSION + 1}")
    with (
        pytest.raises(TransportConfigError, match="newer asapo-pipelines") as err,
        _open(tmp_path) as t,
        t.consumer(SOURCE, "fit") as c,
    ):
        c.streams()
    assert "\n" not in str(err.value)


def test_rows_written_without_the_totals_never_make_a_finished_stream_wait(tmp_path):
    # a process of an older release writing into the store keeps no totals; a finished stream
    # whose totals show fewer messages than its last id is counted from its rows instead
    with _open(tmp_path) as t, t.producer(SOURCE) as p:
        p.send_many("a", [(b"q", {}) for _ in range(3)])
    with _index(tmp_path) as db:
        (sid,) = db.execute("SELECT sid FROM streams WHERE name='a'").fetchone()
        db.execute(
            "INSERT INTO messages(sid, id, ts, size, meta, inline) VALUES (?, 4, ?, 1, '{}', ?)",
            (sid, time.time(), b"r"),
        )
        db.execute("UPDATE streams SET last_id=4, finished=1, finish_id=4 WHERE sid=?", (sid,))
    assert _reported(tmp_path)["a"][:2] == (4, 4)
    with _open(tmp_path) as t, t.consumer(SOURCE, "fit") as c:
        taken = _take(c, "a", 10)
        assert len(taken) == 4
        c.acknowledge_many("a", taken)
        with pytest.raises(StreamFinished):
            c.get_next("a", timeout=0.5)
