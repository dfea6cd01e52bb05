"""Leases a consumer renews on a real redis-server (`extend_lease`): a message worked on for
longer than the lease stays with its consumer while it renews, and a renewal never takes back
a message another consumer got after the lease ran out."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.transport import NoData, TransportConfigError, Unavailable
from asapo_pipelines_redis.testing import RedisServer
from asapo_pipelines_redis.transport import open_transport

LEASE = 1.0


def _holder(transport: Any, source: str, stream: str, group: str) -> list[str]:
    """The Redis consumers the group's pending entries of ``stream`` are with."""
    key = f"{transport.config.key_prefix}:{{{source}}}:x:{stream}"
    pending = transport._conn.client.xpending_range(key, group, min="-", max="+", count=10)
    return [p["consumer"].decode() for p in pending]


def _hold(consumer: Any, stream: str, ids: list[int], seconds: float, others: list[Any]) -> None:
    """Renew the leases of ``ids`` for ``seconds`` as a worker does (three times a lease),
    while the other consumers of the group keep asking for a message and get none."""
    deadline = time.monotonic() + seconds
    # the others' asks share the third of a lease between two renewals: one ask of a third
    # each left a third of a lease of margin with two others, which a loaded machine can lose
    ask = LEASE / 3 / max(len(others), 1)
    while time.monotonic() < deadline:
        for mid in ids:
            consumer.extend_lease(stream, mid)
        for other in others:
            with pytest.raises(NoData):
                other.get_next(stream, timeout=ask)


def test_an_extended_lease_keeps_the_message_from_the_rest_of_the_group(open_redis: Any) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send("s", b"slow", {"n": 1})
    with (
        transport.consumer("src", "g", lease_seconds=LEASE) as worker,
        transport.consumer("src", "g", lease_seconds=LEASE) as idle,
    ):
        msg = worker.get_next("s", timeout=2)
        # three leases long: without renewals the idle consumer would get it after one
        _hold(worker, "s", [msg.id], 3 * LEASE, [idle, worker])
        worker.acknowledge("s", msg.id)
        worker.extend_lease("s", msg.id)  # acknowledged: nothing to renew, no error
        for consumer in (idle, worker):
            with pytest.raises(NoData):
                consumer.get_next("s", timeout=1.5 * LEASE)
    assert msg.delivery_count == 1


def test_an_extension_leaves_a_message_with_the_consumer_that_took_it_over(
    open_redis: Any,
) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send("s", b"slow", None)
    with (
        transport.consumer("src", "g", lease_seconds=LEASE) as late,
        transport.consumer("src", "g", lease_seconds=LEASE) as other,
        transport.consumer("src", "g", lease_seconds=LEASE) as third,
    ):
        first = late.get_next("s", timeout=2)
        # `late` renewed too late: its lease ran out and the message went to `other`
        taken = other.get_next("s", timeout=3 * LEASE)
        assert (taken.id, taken.delivery_count) == (first.id, 2)
        late.extend_lease("s", first.id)
        assert _holder(transport, "src", "s", "g") == [other.name]
        # `other` dies without renewing: its lease runs out whatever `late` renews, and the
        # message goes on to a third consumer
        took = time.monotonic()
        again = None
        while again is None and time.monotonic() - took < 5 * LEASE:
            late.extend_lease("s", first.id)
            with contextlib.suppress(NoData):
                again = third.get_next("s", timeout=LEASE / 5)
        assert again is not None
        assert (again.id, again.delivery_count) == (first.id, 3)
        assert _holder(transport, "src", "s", "g") == [third.name]
        third.acknowledge("s", again.id)


def test_an_extension_for_less_than_the_lease_gives_the_message_back_sooner(
    open_redis: Any,
) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send("s", b"m", None)
    with (
        transport.consumer("src", "g", lease_seconds=30) as holder,
        transport.consumer("src", "g", lease_seconds=LEASE) as other,
    ):
        msg = holder.get_next("s", timeout=2)
        holder.extend_lease("s", msg.id, 0.5)
        # back after half a second, not after the 30 s lease
        again = other.get_next("s", timeout=10)
        assert (again.id, again.delivery_count) == (msg.id, 2)
        other.acknowledge("s", again.id)
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(TransportConfigError, match="must be positive"):
                holder.extend_lease("s", msg.id, bad)


def test_prefetched_messages_whose_leases_were_extended_are_still_handed_out(
    open_redis: Any,
) -> None:
    transport = open_redis()
    with transport.producer("src") as producer:
        producer.send_many("s", [(b"m", {"i": i}) for i in range(3)])
    with (
        transport.consumer("src", "g", lease_seconds=LEASE, prefetch=3) as worker,
        transport.consumer("src", "g", lease_seconds=LEASE) as idle,
    ):
        first = worker.get_next("s", timeout=2)
        # the other two wait in the worker's buffer while it renews all three
        _hold(worker, "s", [1, 2, 3], 2 * LEASE, [idle])
        rest = [worker.get_next("s", timeout=0) for _ in range(2)]
        # from the buffer, as first delivered: not dropped as expired and taken again
        assert sorted(m.id for m in [first, *rest]) == [1, 2, 3]
        assert [m.delivery_count for m in rest] == [1, 1]
        worker.acknowledge_many("s", [1, 2, 3])


def test_a_server_that_dies_under_a_renewal_gives_unavailable_in_one_sentence(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "srv") as server:
        transport = open_transport({"url": server.url, "timeout": 1})
        with transport.producer("src") as producer:
            producer.send("s", b"m", None)
        consumer = transport.consumer("src", "g", lease_seconds=LEASE)
        msg = consumer.get_next("s", timeout=2)
        server.stop()
        with pytest.raises(Unavailable) as info:
            consumer.extend_lease("s", msg.id)
        assert str(info.value).startswith(f"Redis at 127.0.0.1:{server.port} is unreachable")
        assert "while extending a lease (data source 'src')" in str(info.value)
        assert "\n" not in str(info.value)
        transport.close()


def test_lost_leases_names_what_another_consumer_took_or_acknowledged(open_redis: Any) -> None:
    """A worker paused past its leases asks which of its messages it holds no more, and leaves
    those to the consumer that has them (their outputs are that one's to write)."""
    transport = open_redis()
    with transport.producer("src") as producer:
        for n in range(3):
            producer.send("s", f"m{n}".encode(), {"n": n})
    with (
        transport.consumer("src", "g", lease_seconds=LEASE) as slow,
        transport.consumer("src", "g", lease_seconds=LEASE) as other,
    ):
        taken = [slow.get_next("s", timeout=2)]
        taken += [slow.get_next("s", timeout=2) for _ in range(2)]
        held = {m.id: m.delivery_count for m in taken}
        assert slow.lost_leases("s", held) == set()
        time.sleep(1.2 * LEASE)  # the leases ran out; nobody took them yet: still its own
        assert slow.lost_leases("s", held) == set()
        again = other.get_next("s", timeout=2)  # one goes to the other consumer ...
        assert again.delivery_count == 2
        assert slow.lost_leases("s", held) == {again.id}
        assert other.lost_leases("s", {again.id: 2}) == set()
        other.acknowledge("s", again.id)  # ... which acknowledges it
        assert slow.lost_leases("s", held) == {again.id}
