"""What only the embedded store promises: files on disk, retention, corruption, settings."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asapo_pipelines.transport import (
    CorruptPayload,
    DuplicateId,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    open_transport,
)
from asapo_pipelines.transport.base import EncodedMetadata
from asapo_pipelines.transport.embedded import INDEX_NAME, INLINE_MAX, EmbeddedTransport


def test_large_payloads_are_memory_mapped_files_small_ones_inline(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    big = os.urandom(4 * 1024 * 1024)
    with store.producer("det") as producer:
        producer.send("s", b"small", None)
        producer.send("s", big, {"kind": "frame"})
    segments = list((tmp_path / "det" / "payloads").rglob("*.seg"))
    assert len(segments) == 1  # only the big one went to a file
    with store.consumer("det", "g") as consumer:
        small = consumer.get_next("s")
        frame = consumer.get_next("s")
    assert small.payload == b"small"
    assert isinstance(frame.payload, memoryview)  # no copy: a view of the mapped file
    assert frame.payload == big


def test_payload_sizes_around_the_inline_limit_round_trip(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    sizes = [0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 300_000]
    payloads = [os.urandom(n) for n in sizes]
    with store.producer("src") as producer:
        producer.send_many("s", [(p, {"n": len(p)}) for p in payloads])
    with store.consumer("src", "g") as consumer:
        for payload in payloads:
            msg = consumer.get_next("s")
            assert bytes(msg.payload) == payload
            assert msg.metadata == {"n": len(payload)}


def test_duplicate_ids_are_refused_unless_it_is_the_same_message_again(tmp_path: Path) -> None:
    with EmbeddedTransport(tmp_path).producer("src") as producer:
        assert producer.send("s", b"a", {"x": 1}, id=7) == 7
        assert producer.send("s", b"a", {"x": 1}, id=7) == 7  # a retried send
        with pytest.raises(DuplicateId, match="already holds a different message 7"):
            producer.send("s", b"bb", {"x": 2}, id=7)
        assert producer.send("s", b"next", None) == 8


def test_a_truncated_payload_file_is_reported_with_stream_and_id(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        producer.send("frames", os.urandom(600_000), None)
    (segment,) = (tmp_path / "src" / "payloads").rglob("*.seg")
    os.truncate(segment, 1000)
    with store.consumer("src", "g") as consumer, pytest.raises(CorruptPayload) as info:
        consumer.get_next("frames")
    assert "message 1 of stream 'frames'" in str(info.value)


def test_metadata_by_id_reads_no_payload_file(tmp_path: Path) -> None:
    """A restarted worker reads its outputs' provenance, a resumed source what it sent: with
    the payload files gone (or megabytes each), the metadata is read all the same, and only
    reading the payload meets the damage."""
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        producer.send("frames", os.urandom(600_000), {"name": "f1.tif", "sha256": "ab"})
        producer.send("frames", b"small", {"name": "f2.tif"})
    (segment,) = (tmp_path / "src" / "payloads").rglob("*.seg")
    segment.unlink()
    with store.consumer("src", "g") as consumer:
        with pytest.raises(CorruptPayload, match="message 1 of stream 'frames'"):
            consumer.get_by_id("frames", 1)
        first = consumer.get_metadata_by_id("frames", 1)
        assert (first.metadata, first.payload) == ({"name": "f1.tif", "sha256": "ab"}, None)
        assert consumer.get_metadata_by_id("frames", 2).metadata == {"name": "f2.tif"}


def test_lost_leases_names_what_another_consumer_took_or_acknowledged(tmp_path: Path) -> None:
    """A consumer paused past its lease asks which of its messages it holds no more."""
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        for n in range(3):
            producer.send("s", f"m{n}".encode(), None)
    with (
        store.consumer("src", "g", lease_seconds=0.3) as slow,
        store.consumer("src", "g", lease_seconds=30) as other,
    ):
        taken = [slow.get_next("s") for _ in range(3)]
        held = {m.id: m.delivery_count for m in taken}
        assert slow.lost_leases("s", held) == set()
        time.sleep(0.4)  # the leases ran out, and nobody took the messages yet: still its own
        assert slow.lost_leases("s", held) == set()
        again = other.get_next("s")  # one goes to the other consumer ...
        assert again.delivery_count == 2
        assert slow.lost_leases("s", held) == {again.id}
        assert other.lost_leases("s", {again.id: 2}) == set()
        other.acknowledge("s", again.id)  # ... which acknowledges it
        assert slow.lost_leases("s", held) == {again.id}
        slow.acknowledge_many("s", [i for i in held if i != again.id])
        assert slow.lost_leases("s", held) == set(held)  # acknowledged: held by nobody


def test_corrupted_seedee_payload_names_stream_and_id(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from asapo_pipelines.transport.formats import decode_message, encode

    store = EmbeddedTransport(tmp_path)
    payload, meta = encode(np.arange(100, dtype=np.int32), "seedee")
    with store.producer("src") as producer:
        producer.send("arrays", payload[:-8], meta)  # bytes lost on the way
        producer.send("arrays", b"{not json", {"format": "json"})
    with store.consumer("src", "g") as consumer:
        first, second = consumer.get_next("arrays"), consumer.get_next("arrays")
    with pytest.raises(CorruptPayload, match=r"message 1 of stream 'arrays' \(src\)"):
        decode_message(first)
    with pytest.raises(CorruptPayload, match=r"message 2 of stream 'arrays'.*invalid JSON"):
        decode_message(second)


def test_retention_drops_idle_streams_and_frees_their_files(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        producer.send("old", os.urandom(500_000), None)
        producer.send("old", b"x", None)
    # ages of a second and more: a loaded machine's stall between the send of "new" and the
    # prune must not make "new" old too
    time.sleep(1.5)
    with store.producer("src") as producer:
        producer.send("new", os.urandom(500_000), None)
    report = store.prune(older_than=1.0)
    assert report.dropped_streams == [("src", "old")]
    assert report.deleted_messages == 2
    assert report.freed_bytes >= 500_000
    with store.consumer("src", "g") as consumer:
        assert [s.name for s in consumer.streams()] == ["new"]
        assert len(consumer.get_next("new").payload) == 500_000
        with pytest.raises(NoData):
            consumer.get_next("old")
    assert store.drop_stream("src", "new") >= 500_000
    assert not list((tmp_path / "src" / "payloads").rglob("*.seg"))


def test_retention_of_a_live_stream_keeps_new_data(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        producer.send("live", b"old-inline", None)
        time.sleep(1.5)  # ages of a second and more, as above
        producer.send("live", b"new-inline", None)
        report = store.prune(older_than=1.0)
        assert report.dropped_streams == []
        assert report.deleted_messages == 1
        producer.send("live", b"after", None)
    with store.consumer("src", "g") as consumer:
        with pytest.raises(MissingId):
            consumer.get_by_id("live", 1)
        assert [consumer.get_next("live").id for _ in range(2)] == [2, 3]


def test_settings_errors_are_one_clear_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TransportConfigError, match="is not a directory"):
        open_transport({"embedded": {"path": str(tmp_path / "file")}})
    with pytest.raises(TransportConfigError, match="exactly one of"):
        open_transport({"embedded": {"path": "x"}, "asapo": {}})
    with pytest.raises(TransportConfigError, match="unknown transport 'kafka'"):
        open_transport({"kafka": {}})
    with pytest.raises(TransportConfigError, match="unknown option for the embedded"):
        open_transport({"embedded": {"path": str(tmp_path), "colour": "red"}})
    store = EmbeddedTransport(tmp_path / "s")
    with pytest.raises(TransportConfigError, match="invalid data source name"):
        store.producer("../escape")
    with pytest.raises(TransportConfigError, match="invalid consumer group name"):
        store.consumer("src", "no spaces")
    with store.producer("src") as producer, pytest.raises(TransportConfigError, match="JSON"):
        producer.send("s", b"", {"bad": object()})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "store.json").write_text(json.dumps({"format": "else", "version": 9}))
    with pytest.raises(TransportConfigError, match="another format or version"):
        EmbeddedTransport(tmp_path / "other")


def test_a_producer_killed_mid_stream_leaves_a_consistent_store(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    EmbeddedTransport(store_dir)
    script = textwrap.dedent(
        f"""
        import os, sys
        from asapo_pipelines.transport.embedded import EmbeddedTransport
        producer = EmbeddedTransport({str(store_dir)!r}).producer("src")
        payload = os.urandom(200_000)
        while True:
            mid = producer.send("s", payload, {{"n": 1}})
            if mid == 20:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = EmbeddedTransport(store_dir)
    with store.consumer("src", "g") as consumer:
        info = consumer.stream_info("s")
        assert info.last_id >= 20
        ids = []
        while True:
            try:
                msg = consumer.get_next("s")
            except NoData:
                break
            assert len(msg.payload) == 200_000
            ids.append(msg.id)
    assert ids == list(range(1, info.last_id + 1))
    with store.producer("src") as producer:  # the store takes writes again
        assert producer.send("s", b"after", None) == info.last_id + 1


def test_a_stream_dropped_and_written_again_is_seen_by_open_consumers(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    consumer = store.consumer("src", "g")
    with store.producer("src") as producer:
        producer.send("s", b"first life", None)
        assert consumer.get_next("s").payload == b"first life"
        store.drop_stream("src", "s")
        with pytest.raises(NoData):
            consumer.get_next("s")
        assert producer.send("s", b"second life", None) == 1
    msg = consumer.get_next("s", timeout=5)
    assert (msg.id, msg.payload, msg.delivery_count) == (1, b"second life", 1)
    consumer.close()


def test_a_consumer_waiting_wakes_up_when_another_process_writes(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store = EmbeddedTransport(store_dir)
    script = textwrap.dedent(
        f"""
        import time
        from asapo_pipelines.transport.embedded import EmbeddedTransport
        time.sleep(0.5)
        with EmbeddedTransport({str(store_dir)!r}).producer("src") as producer:
            producer.send("s", b"hello", {{"from": "child"}})
        """
    )
    with store.consumer("src", "g") as consumer:
        child = subprocess.Popen([sys.executable, "-c", script])
        try:
            msg = consumer.get_next("s", timeout=60)
        finally:
            child.wait(timeout=60)
    assert (msg.payload, msg.metadata) == (b"hello", {"from": "child"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_consumer_idle_on_its_wake_descriptor_never_sleeps_through_a_commit(
    tmp_path: Path,
) -> None:
    # A worker idles in select() on the wake descriptor for as long as its poll (minutes when
    # set so). Another process sends one message at a time while the consumer waits, and says
    # when its send returned; by then either the message was found or a wake must be pending:
    # a wake that came before the commit could be read, was drained by a look that found
    # nothing, and left none behind would leave a worker asleep with data waiting.
    import select

    store_dir = tmp_path / "store"
    count = 200
    script = textwrap.dedent(
        f"""
        import sys
        from asapo_pipelines.transport.embedded import EmbeddedTransport
        with EmbeddedTransport({str(store_dir)!r}).producer("src") as producer:
            for i in range({count}):
                sys.stdin.readline()  # the consumer waits now
                producer.send("s", str(i).encode(), {{"i": i}})
                print("sent", flush=True)
        """
    )
    slept_through = 0
    # busy processes widen the window in which a writer is descheduled between appending a
    # commit to the WAL file and publishing it, as a loaded CI machine does
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    with (
        contextlib.ExitStack() as stack,
        EmbeddedTransport(store_dir).consumer("src", "g") as consumer,
    ):
        for proc in busy:
            stack.callback(proc.wait, 10)
            stack.callback(proc.kill)
        fd = consumer.wake_fd()
        assert fd is not None
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert child.stdin is not None
        assert child.stdout is not None
        said = child.stdout.fileno()
        try:
            for i in range(count):
                with pytest.raises(NoData):
                    consumer.get_next("s", timeout=0)  # looked: the events so far are drained
                child.stdin.write(b"\n")
                child.stdin.flush()
                msg, sent = None, False
                while msg is None:
                    if sent and not select.select([fd], [], [], 0)[0]:
                        # committed, not found, and no wake pending: a worker would sleep on
                        slept_through += 1
                        msg = consumer.get_next("s", timeout=0)
                        break
                    ready = select.select([fd] if sent else [fd, said], [], [], 60)[0]
                    assert ready, f"neither a wake nor the producer's word for message {i}"
                    if fd in ready:
                        with contextlib.suppress(NoData):  # a wake may be for something else
                            msg = consumer.get_next("s", timeout=0)
                    else:
                        assert child.stdout.readline() == b"sent\n"
                        sent = True
                if not sent:
                    assert child.stdout.readline() == b"sent\n"
                assert msg.metadata == {"i": i}
                consumer.acknowledge("s", msg.id)
        finally:
            child.stdin.close()
            child.wait(timeout=60)
    assert slept_through == 0


def test_a_damaged_index_is_one_clear_error(tmp_path: Path) -> None:
    store = EmbeddedTransport(tmp_path)
    with store.producer("src") as producer:
        producer.send("s", b"x", None)
    for name in ("index.db-wal", "index.db-shm"):
        (tmp_path / "src" / name).unlink(missing_ok=True)
    (tmp_path / "src" / "index.db").write_bytes(b"this is not a database" * 100)
    # a storage failure, not a setting: the sentence names the file and the remedy
    with pytest.raises(
        StorageError,
        match=r"data source 'src' \(.*index\.db\) failed: .*"
        r"restore it from a backup, or move it aside",
    ):
        store.consumer("src", "g")


def test_acknowledging_the_last_message_shows_the_stream_finished_at_once(tmp_path):
    """A consumer that found nothing while its own message was in flight must not keep
    answering 'no data' until the lease expires once that message is acknowledged."""
    from asapo_pipelines.transport import StreamFinished

    transport = EmbeddedTransport(tmp_path)
    producer = transport.producer("src")
    consumer = transport.consumer("src", "g", lease_seconds=600)
    producer.send("scan", b"x", {})
    producer.finish_stream("scan")
    message = consumer.get_next("scan")
    with pytest.raises(NoData):
        consumer.get_next("scan")
    consumer.acknowledge_many("scan", [message.id])
    with pytest.raises(StreamFinished):
        consumer.get_next("scan", timeout=0.0)
    transport.close()


def test_a_stream_finished_just_after_an_empty_claim_still_delivers_its_last_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer found nothing to lease; before it looked whether the stream was finished,
    the producer wrote its last messages and finished the stream. Deciding "finished" outside
    the claim's transaction took those messages for delivered: the downstream unit ended
    without them (seen in CI as a sink with an empty file). The producer is run at exactly
    that moment, after the claim's transaction."""
    store = {"embedded": {"path": str(tmp_path)}}
    with open_transport(store) as t, t.producer("src") as p, t.consumer("src", "sink") as c:
        p.send("s", b"first", {})
        assert c.get_next("s", timeout=1.0).payload == b"first"
        c.acknowledge("s", 1)
        claim = c._claim
        producer_ran = []

        def claim_then_producer_finishes(stream):
            result = claim(stream)
            leased, _finished = result
            if not leased and not producer_ran:
                producer_ran.append(True)
                p.send_many("s", [(b"last-1", {}), (b"last-2", {})])
                p.finish_stream("s")
            return result

        monkeypatch.setattr(c, "_claim", claim_then_producer_finishes)
        got = []
        with contextlib.suppress(StreamFinished):
            while True:
                msg = c.get_next("s", timeout=1.0)
                got.append(bytes(msg.payload))
                c.acknowledge("s", msg.id)
        assert producer_ran
        assert got == [b"last-1", b"last-2"]


def test_messages_past_a_window_this_group_had_acknowledged_are_still_delivered(
    tmp_path: Path,
) -> None:
    """Acknowledged before they were leased (a unit's restarted replica acknowledging what its
    earlier self processed): a claim window of only such rows leased nothing, and the stream
    was taken as finished with messages after the window never delivered."""
    store = {"embedded": {"path": str(tmp_path)}}
    with open_transport(store) as t, t.producer("src") as p:
        p.send_many("s", [(f"m{i}".encode(), {}) for i in range(1, 6)])
        p.finish_stream("s")
        with t.consumer("src", "fit", prefetch=2) as c:
            c.acknowledge_many("s", [1, 2, 3])
            got = []
            with contextlib.suppress(StreamFinished):
                while True:
                    msg = c.get_next("s", timeout=1.0)
                    got.append(msg.id)
                    c.acknowledge("s", msg.id)
    assert got == [4, 5]


# metadata as JSON allows it: what a producer may send (NaN and infinities are refused)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def meta_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTransport]:
    store = EmbeddedTransport(tmp_path_factory.mktemp("meta"))
    yield store
    store.close()


@settings(max_examples=150, deadline=None)
@given(metadata=st.dictionaries(st.text(), _json_values, max_size=6))
def test_metadata_is_stored_as_the_json_library_writes_it_and_read_back_equal(
    meta_store: EmbeddedTransport, metadata: dict
) -> None:
    with meta_store.producer("src") as producer:
        (mid,) = producer.send_many("s", [(b"x", metadata)])
    db = sqlite3.connect(meta_store.root / "src" / INDEX_NAME)
    try:
        (stored,) = db.execute("SELECT meta FROM messages WHERE id=?", (mid,)).fetchone()
    finally:
        db.close()
    # what the index holds is readable by any JSON reader, as the standard library writes it
    assert stored == json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    with meta_store.consumer("src", "g") as consumer:
        assert consumer.get_by_id("s", mid).metadata == metadata


def test_metadata_encoded_where_it_was_made_is_stored_as_it_is_when_sent(tmp_path: Path) -> None:
    # the runner hands its checked text on (EncodedMetadata); a change made after that must
    # reach the store, whichever way the dict was changed
    changes = {
        "item set": lambda m: m.__setitem__("scan", 8),
        "item deleted": lambda m: m.__delitem__("scan"),
        "update": lambda m: m.update(scan=9),
        "|=": lambda m: m.__ior__({"extra": [1]}),
        "setdefault": lambda m: m.setdefault("new", "x"),
        "pop": lambda m: m.pop("scan"),
        "popitem": lambda m: m.popitem(),
        "clear": lambda m: m.clear(),
    }
    sent: list[dict] = []
    with EmbeddedTransport(tmp_path) as store, store.producer("src") as producer:
        items = []
        for change in [None, *changes.values()]:
            meta = EncodedMetadata({"scan": 7, "e0": 7126.9}, '{"scan":7,"e0":7126.9}')
            if change is not None:
                change(meta)
            sent.append(dict(meta))
            items.append((b"x", meta))
        ids = producer.send_many("s", items)
        with store.consumer("src", "g") as consumer:
            stored = [consumer.get_by_id("s", mid).metadata for mid in ids]
    assert stored == sent
    assert pickle.loads(pickle.dumps(items[0][1])) == {"scan": 7, "e0": 7126.9}


def test_metadata_that_json_cannot_hold_is_one_sentence_from_any_thread(tmp_path: Path) -> None:
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    bad = {
        "a cycle": ({"scan": cyclic}, "it contains itself or is nested too deeply"),
        "deep nesting": ({"scan": deep}, "it contains itself or is nested too deeply"),
        "NaN": ({"noise": float("nan")}, "Out of range float values"),
        "a set": ({"ids": {1, 2}}, "Object of type set is not JSON serializable"),
    }
    store = EmbeddedTransport(tmp_path)
    found: dict[str, str] = {}

    def send_all() -> None:
        with store.producer("src") as producer:
            for case, (metadata, _) in bad.items():
                try:
                    producer.send("s", b"x", metadata)
                except TransportConfigError as exc:
                    found[case] = str(exc)
            producer.send("s", b"ok", {"after": "the refusals"})

    # the status thread sends too: the encoder must hold no state between calls or threads
    thread = threading.Thread(target=send_all)
    thread.start()
    thread.join()
    send_all()
    for case, (_, words) in bad.items():
        assert found[case].startswith("message metadata is not JSON-serializable: "), case
        assert words in found[case], (case, found[case])
        assert "\n" not in found[case]
    with store.consumer("src", "g") as consumer:
        taken = [consumer.get_next("s") for _ in range(2)]
        with pytest.raises(NoData):
            consumer.get_next("s", timeout=0.0)
    assert [m.metadata for m in taken] == [{"after": "the refusals"}] * 2
    store.close()
