"""What the redis transport adds to the contract, on a real redis-server: durability across a
server restart with its append-only file, a consumer process killed with SIGKILL, the shared
payload directory, retention, the key layout, and one sentence for a Redis that is down, slow
or refuses the password."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.transport import (
    CorruptPayload,
    DuplicateId,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)
from asapo_pipelines_redis.testing import RedisServer, free_port
from asapo_pipelines_redis.transport import open_transport

SECRET = "s3cret-never-printed"


def _drain(consumer: Any, stream: str, timeout: float = 0.5) -> list[Any]:
    got = []
    while True:
        try:
            msg = consumer.get_next(stream, timeout=timeout)
        except (NoData, StreamFinished):
            return got
        got.append(msg)
        consumer.acknowledge(stream, msg.id)


def _retry(call: Any, seconds: float = 30.0) -> Any:
    """What a worker does when Redis is away for a moment: try again until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- durability ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sig", "appendfsync"),
    [(signal.SIGTERM, "everysec"), (signal.SIGKILL, "always")],
    ids=["restart-everysec", "crash-sigkill-appendfsync-always"],
)
def test_server_restarted_mid_run_loses_nothing_acknowledged(
    tmp_path: Path, sig: int, appendfsync: str
) -> None:
    """A producer and a consumer keep going while redis-server is stopped (SIGTERM, or killed
    with SIGKILL when every write is fsynced before Redis answers) and started again on its
    append-only file: every send that returned is delivered, every acknowledgement holds."""
    total = 300
    with RedisServer(tmp_path / "srv", appendfsync=appendfsync) as server:
        transport = open_transport({"url": server.url, "timeout": 2})
        producer = transport.producer("src")
        consumer = transport.consumer("src", "sink", lease_seconds=2)
        sent: list[int] = []
        acked: list[int] = []
        restarted = threading.Event()

        def produce() -> None:
            for i in range(total):
                sent.append(_retry(lambda i=i: producer.send("s", f"m{i}".encode(), {"i": i})))
                if i == total // 2:
                    restarted.wait(30)
                time.sleep(0.001)
            _retry(lambda: producer.finish_stream("s"))

        thread = threading.Thread(target=produce)
        thread.start()
        while len(acked) < total // 3:
            msg = _retry(lambda: consumer.get_next("s", timeout=2))
            _retry(lambda msg=msg: consumer.acknowledge("s", msg.id))
            acked.append(msg.id)
        server.restart(sig)
        restarted.set()
        while True:
            try:
                msg = _retry(lambda: consumer.get_next("s", timeout=5))
            except (StreamFinished, NoData):
                break
            _retry(lambda msg=msg: consumer.acknowledge("s", msg.id))
            acked.append(msg.id)
        thread.join(30)
        # every send that returned came through, and nothing acknowledged came back
        assert sorted(sent) == list(range(1, total + 1))
        assert sorted(acked) == sorted(sent)
        assert len(acked) == len(set(acked))
        info = consumer.stream_info("s")
        assert (info.finished, info.message_count, info.group_lag) == (True, total, {"sink": 0})
        consumer.close()
        producer.close()
        transport.close()


CONSUMER_SCRIPT = """
import sys, time
from asapo_pipelines_redis.transport import open_transport
t = open_transport({"url": sys.argv[1], "key_prefix": sys.argv[2]})
c = t.consumer("src", "work", lease_seconds=1.0)
msg = c.get_next("s", timeout=10)
print(msg.id, flush=True)
time.sleep(60)  # dies holding the message, never acknowledging
"""


def test_consumer_killed_with_sigkill_its_message_comes_back_to_another(
    redis_server: RedisServer, open_redis: Any
) -> None:
    transport = open_redis()
    prefix = transport.config.key_prefix
    with transport.producer("src") as producer:
        producer.send_many("s", [(f"m{i}".encode(), {"i": i}) for i in range(3)])
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER_SCRIPT, redis_server.url, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        held = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with transport.consumer("src", "work", lease_seconds=1.0) as other:
        got = {m.id: m for m in _drain(other, "s", timeout=3)}
    assert sorted(got) == [1, 2, 3]
    # the held one came back through XAUTOCLAIM, counted as a second delivery
    assert got[held].delivery_count == 2
    assert got[held].possibly_redelivered


def test_prefetched_messages_whose_lease_ran_out_are_not_handed_out_from_the_buffer(
    open_redis: Any,
) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send_many("s", [(b"m", {"i": i}) for i in range(4)])
    with transport.consumer("src", "g", lease_seconds=1.0, prefetch=4) as consumer:
        first = consumer.get_next("s", timeout=1)
        consumer.acknowledge("s", first.id)
        time.sleep(1.1)  # the other three, prefetched, are past their lease
        rest = _drain(consumer, "s", timeout=2)
    # they came back through XAUTOCLAIM (counted), not stale from the buffer
    assert sorted(m.id for m in rest) == [2, 3, 4]
    assert all(m.delivery_count == 2 for m in rest)


# -- payloads --------------------------------------------------------------------------------
def test_large_payloads_go_to_the_shared_directory_and_small_ones_stay_inline(
    open_redis: Any, tmp_path: Path
) -> None:
    transport = open_redis(inline_max=1024)
    big = os.urandom(600_000)
    with transport.producer("src") as producer:
        producer.send("s", b"small", None)
        producer.send("s", big, {"k": 1})
    files = sorted((tmp_path / "payloads").rglob("*.bin"))
    assert len(files) == 1
    assert files[0].read_bytes() == big
    assert files[0].relative_to(tmp_path / "payloads").parts[:2] == ("src", "s")
    with transport.consumer("src", "g") as consumer:
        msgs = _drain(consumer, "s")
        assert [bytes(m.payload) for m in msgs] == [b"small", big]
        # a payload file that went missing: the message's metadata still comes, as damaged
        with transport.producer("src") as producer:
            producer.send("s", os.urandom(5000), {"k": 2})
        newest = max((tmp_path / "payloads").rglob("*.bin"), key=lambda p: p.stat().st_mtime_ns)
        newest.unlink()
        with pytest.raises(CorruptPayload) as info:
            consumer.get_next("s", timeout=1)
    assert info.value.damaged.metadata == {"k": 2}
    assert "payload file" in str(info.value)
    assert "shared directory" in str(info.value)


def test_metadata_by_id_reads_no_payload_file(open_redis: Any, tmp_path: Path) -> None:
    """A restarted worker reads its outputs' provenance with `get_metadata_by_id`: a payload
    kept in the shared directory is not read for it (here it is gone, and only reading the
    payload meets that)."""
    transport = open_redis(inline_max=1024)
    with transport.producer("src") as producer:
        producer.send("s", os.urandom(600_000), {"name": "f1.tif"})
    (payload_file,) = (tmp_path / "payloads").rglob("*.bin")
    payload_file.unlink()
    with transport.consumer("src", "g") as consumer:
        with pytest.raises(CorruptPayload):
            consumer.get_by_id("s", 1)
        found = consumer.get_metadata_by_id("s", 1)
    assert (found.metadata, found.payload) == ({"name": "f1.tif"}, None)


def test_a_payload_above_inline_max_without_a_payload_dir_is_refused_in_one_sentence(
    redis_server: RedisServer,
) -> None:
    transport = open_transport({"url": redis_server.url, "inline_max": 100})
    with transport.producer("src") as producer, pytest.raises(TransportConfigError) as info:
        producer.send("s", b"x" * 101, None)
    assert "inline_max (100)" in str(info.value)
    assert "payload_dir" in str(info.value)
    transport.close()


# -- retention, listing, key layout ----------------------------------------------------------
def test_retention_by_count_trims_old_messages_and_their_files(
    open_redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asapo_pipelines_redis.transport as module

    monkeypatch.setattr(module, "RETENTION_EVERY_S", 0.0)
    transport = open_redis(inline_max=10, retention={"max_messages": 5})
    with transport.producer("src") as producer:
        for i in range(12):
            producer.send("s", bytes([i]) * 100, {"i": i})
    with transport.consumer("src", "g") as consumer:
        assert sorted(m.id for m in _drain(consumer, "s")) == [8, 9, 10, 11, 12]
        with pytest.raises(MissingId) as info:
            consumer.get_by_id("s", 3)
        assert "retention" in str(info.value)
        (stream,) = consumer.streams()
    assert (stream.message_count, stream.size_bytes, stream.last_id) == (5, 500, 12)
    assert len(list((tmp_path / "payloads").rglob("*.bin"))) == 5


def test_retention_by_age_trims_by_the_servers_clock(
    open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asapo_pipelines_redis.transport as module

    monkeypatch.setattr(module, "RETENTION_EVERY_S", 0.0)
    transport = open_redis(retention={"max_age_seconds": 1.0})
    with transport.producer("src") as producer:
        producer.send_many("s", [(b"old", None)] * 3)
        time.sleep(1.3)
        producer.send("s", b"new", None)
    with transport.consumer("src", "g") as consumer:
        assert [bytes(m.payload) for m in _drain(consumer, "s")] == [b"new"]
        assert consumer.stream_info("s").message_count == 1


def test_a_groups_lag_after_retention_counts_only_what_it_can_still_read(
    open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis counts a group's lag as entries added minus entries read: entries trimmed before
    the group read them stayed in it, so `pipeline streams` and the workers' backlog showed
    messages that no longer exist, and a lag above 0 once the group had read everything."""
    import asapo_pipelines_redis.transport as module

    monkeypatch.setattr(module, "RETENTION_EVERY_S", 0.0)
    transport = open_redis(retention={"max_messages": 5})
    with transport.producer("src") as producer, transport.consumer("src", "g") as consumer:
        producer.send("s", b"first", None)
        assert [m.id for m in _drain(consumer, "s")] == [1]
        for i in range(11):
            producer.send("s", b"later", {"i": i})
        info = consumer.stream_info("s")
        assert info.message_count == 5
        assert info.group_lag == {"g": 5}
        with transport.consumer("src", "late") as late:
            assert len(_drain(late, "s")) == 5
        assert [m.id for m in _drain(consumer, "s", timeout=0.2)] == [8, 9, 10, 11, 12]
        assert consumer.stream_info("s").group_lag == {"g": 0, "late": 0}


def test_prune_by_age_drops_idle_streams_and_describe_lists_what_is_left(open_redis: Any) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send("old", b"a", None)
        time.sleep(1.2)
        producer.send("new", b"b", None)
    assert {s.name for s in transport.describe()["src"]} == {"old", "new"}
    report = transport.prune(1.0)
    assert report.dropped_streams == [("src", "old")]
    assert report.deleted_messages == 1
    assert [s.name for s in transport.describe()["src"]] == ["new"]
    assert transport.drop_stream("src", "new") == 0  # its payload was inline, not a file
    with pytest.raises(TransportConfigError):
        transport.drop_stream("src", "new")


def test_keys_live_under_the_prefix_and_two_prefixes_never_meet(
    redis_server: RedisServer, open_redis: Any
) -> None:
    import redis

    a, b = open_redis(), open_redis()
    with a.producer("p65.raw") as producer:
        producer.send("scan-1", b"a", None)
        producer.set_source_metadata({"beamline": "p65"})
    with b.consumer("p65.raw", "g") as consumer, pytest.raises(NoData):
        consumer.get_next("scan-1", timeout=0.2)
    assert b.data_sources() == []
    assert a.data_sources() == ["p65.raw"]
    client = redis.Redis.from_url(redis_server.url)
    prefix = a.config.key_prefix
    keys = {k.decode() for k in client.scan_iter(f"{prefix}:*")}
    # send tokens (a retried send's answer) expire on their own
    tokens = {k for k in keys if k.startswith(f"{prefix}:{{p65.raw}}:t:")}
    assert len(tokens) == 1
    assert 0 < client.ttl(tokens.pop()) <= 600
    client.close()
    keys = {k for k in keys if ":t:" not in k}
    assert keys == {
        f"{prefix}:sources",
        f"{prefix}:store-id",  # written by the first producer: a Redis emptied is told apart
        f"{prefix}:writes",  # the store's write count: a Redis back from an older snapshot too
        f"{prefix}:{{p65.raw}}:meta",
        f"{prefix}:{{p65.raw}}:streams",
        f"{prefix}:{{p65.raw}}:i:scan-1",
        f"{prefix}:{{p65.raw}}:x:scan-1",
        f"{prefix}:{{p65.raw}}:n:scan-1",
    }


def test_a_different_message_under_an_existing_id_is_refused_and_a_retry_is_kept_once(
    open_redis: Any,
) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        assert producer.send("s", b"a", {"v": 1}, id=4) == 4
        assert producer.send("s", b"a", {"v": 1}, id=4) == 4  # a retried send
        with pytest.raises(DuplicateId):
            producer.send("s", b"b", {"v": 2}, id=4)
    with transport.consumer("src", "g") as consumer:
        assert [m.id for m in _drain(consumer, "s")] == [4]


def test_a_full_redis_refuses_sends_with_a_storage_error_and_keeps_what_it_has(
    tmp_path: Path,
) -> None:
    limits = ("maxmemory 3mb", "maxmemory-policy noeviction")
    with RedisServer(tmp_path / "srv", config=limits) as server:
        transport = open_transport({"url": server.url})
        sent = 0
        with transport.producer("src") as producer:
            while sent < 1000:
                try:
                    producer.send("s", b"x" * 100_000, None)
                except StorageError as exc:
                    assert "out of memory (maxmemory)" in str(exc)  # noqa: PT017
                    break
                sent += 1
        assert sent < 1000
        with transport.consumer("src", "g") as consumer:
            assert len(_drain(consumer, "s")) == sent > 0
        transport.close()


def test_a_consumer_that_closes_holding_nothing_leaves_the_group(
    redis_server: RedisServer, open_redis: Any
) -> None:
    import redis

    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send_many("s", [(b"a", None), (b"b", None)])
    done = transport.consumer("src", "g")
    _drain(done, "s")
    holding = transport.consumer("src", "g")
    with transport.producer("src") as producer:
        producer.send("s", b"c", None)
    holding.get_next("s", timeout=1)
    done.close()
    holding.close()
    client = redis.Redis.from_url(redis_server.url)
    log = f"{transport.config.key_prefix}:{{src}}:x:s"
    names = [c["name"].decode() for c in client.xinfo_consumers(log, "g")]
    client.close()
    # the one holding an unacknowledged message stays, so that it can be reclaimed
    assert names == [holding.name]


# -- errors: one sentence, never the password ------------------------------------------------
def test_redis_down_gives_unavailable_in_one_sentence() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(Unavailable) as info:
        open_transport({"url": f"redis://127.0.0.1:{port}/0", "timeout": 1})
    text = str(info.value)
    assert f"Redis at 127.0.0.1:{port} is unreachable" in text
    assert "\n" not in text


def test_redis_that_never_answers_gives_unavailable_within_the_deadline() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            open_transport({"url": f"redis://127.0.0.1:{port}/0", "timeout": 0.5})
        took = time.monotonic() - started
    assert "did not answer within 0.5 s" in str(info.value)
    assert took < 5


def test_a_server_that_dies_under_a_consumer_gives_unavailable(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "srv") as server:
        transport = open_transport({"url": server.url, "timeout": 1})
        consumer = transport.consumer("src", "g")
        server.stop()
        with pytest.raises(Unavailable) as info:
            consumer.get_next("s", timeout=0.1)
        assert "taking the next message" in str(info.value)
        assert isinstance(info.value, TransportError)
        transport.close()


def test_wrong_missing_and_unset_passwords_are_config_errors_that_never_print_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RedisServer(tmp_path / "srv", password=SECRET) as server:
        right = tmp_path / "right"
        right.write_text(SECRET + "\n")
        wrong = tmp_path / "wrong"
        wrong.write_text("not-it\n")
        ok = open_transport({"url": server.url, "password_file": str(right)})
        with ok.producer("src") as producer:
            assert producer.send("s", b"x", None) == 1
        ok.close()
        monkeypatch.setenv("REDIS_PW", SECRET)
        open_transport({"url": server.url, "password_env": "REDIS_PW"}).close()
        cases = [
            ({"password_file": str(wrong)}, f"refused the password from {wrong}"),
            ({}, "refused no password"),
            ({"password_file": str(tmp_path / "none")}, "cannot read the Redis password file"),
            ({"password_env": "REDIS_PW_UNSET"}, "REDIS_PW_UNSET (the Redis password) is not set"),
        ]
        for options, expected in cases:
            with pytest.raises(TransportConfigError) as info:
                open_transport({"url": server.url, **options})
            assert expected in str(info.value)
            assert SECRET not in str(info.value)
            assert "not-it" not in str(info.value)
        with pytest.raises(TransportConfigError) as info:
            open_transport({"url": f"redis://:{SECRET}@127.0.0.1:{server.port}/0"})
        assert "must not hold a password" in str(info.value)
        assert SECRET not in str(info.value)
