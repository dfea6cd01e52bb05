"""The transport contract: every operation of the `Transport` interface, as cases any transport
must pass: the embedded store, ASAP::O, Redis, and a transport of your own plugin.

Run them against your transport from your plugin's tests: import the cases into a test module
and give them a `backend` fixture that opens your transport::

    import pytest
    from asapo_pipelines.testing.transport_contract import *  # noqa: F403 (the cases)
    from asapo_pipelines.testing.transport_contract import Backend
    from asapo_pipelines.sdk.transports import open_transport


    @pytest.fixture
    def backend(tmp_path):
        transport = open_transport({"mybus": {"url": ...}})
        yield Backend("mybus", transport, "src")
        transport.close()

Each case uses its own stream and consumer groups (`Backend.stream()`, `Backend.group()`), so a
service that keeps its data between runs can be shared. `settle` is how long your transport may
take to make a sent message visible to a consumer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.transport import (
    EndOfStream,
    MissingId,
    NoData,
    StreamFinished,
    TransportError,
)
from asapo_pipelines.transport.formats import decode_message


@dataclass
class Backend:
    """The transport a case runs against, and what the case needs to know of it."""

    #: a name for messages (the embedded store's case of a dead consumer is stricter)
    kind: str
    transport: Any
    #: the data source the cases write and read
    source: str
    #: how long the backend may take to make a sent message visible
    settle: float = 0.0

    def stream(self) -> str:
        # unique per case: a real service keeps streams between runs
        return f"t{uuid.uuid4().hex[:12]}"

    def group(self) -> str:
        return f"g{uuid.uuid4().hex[:12]}"


def _drain(consumer: Any, stream: str, *, timeout: float, ack: bool = True) -> list[Any]:
    got: list[Any] = []
    while True:
        try:
            msg = consumer.get_next(stream, timeout=timeout)
        except (NoData, StreamFinished):
            return got
        got.append(msg)
        if ack:
            consumer.acknowledge(stream, msg.id)


def test_contract_send_and_receive_payload_and_metadata(backend: Backend) -> None:
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        ids = [
            producer.send(stream, b"first", {"n": 1}),
            producer.send(stream, bytes(range(256)) * 100, {"n": 2, "nested": {"a": [1, 2]}}),
            producer.send(stream, None, {"n": 3}),
        ]
        producer.flush(10)
    assert ids == [1, 2, 3]
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        got = {m.id: m for m in _drain(consumer, stream, timeout=1 + backend.settle)}
    assert sorted(got) == [1, 2, 3]
    assert bytes(got[1].payload) == b"first"
    assert bytes(got[2].payload) == bytes(range(256)) * 100
    assert got[3].payload is None or bytes(got[3].payload) == b""
    assert got[2].metadata["nested"] == {"a": [1, 2]}
    assert {m.stream for m in got.values()} == {stream}
    assert all(m.data_source == backend.source for m in got.values())
    assert all(m.delivery_count == 1 for m in got.values())
    assert all(m.timestamp > 0 for m in got.values())


def test_contract_an_empty_payload_is_sent_and_read_as_empty(backend: Backend) -> None:
    """b"" is a payload (an empty file's bytes; the record of an input a stateful unit
    processed without an output): sent, it comes back as zero bytes, not as no payload, with
    its metadata. The asapo producer refused a zero-length buffer ("Out of bounds on buffer
    access"), which killed a restarted merge worker on ASAP::O at every start."""
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        ids = [producer.send(stream, b"", {"n": 1}), producer.send(stream, b"x", {"n": 2})]
        producer.flush(10)
    assert ids == [1, 2]
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        got = {m.id: m for m in _drain(consumer, stream, timeout=1 + backend.settle)}
        by_id = consumer.get_by_id(stream, 1)
    assert sorted(got) == [1, 2]
    for empty in (got[1], by_id):
        assert empty.payload is not None
        assert bytes(empty.payload) == b""
        assert empty.metadata == {"n": 1}
    assert bytes(got[2].payload) == b"x"


def test_contract_two_producers_of_one_stream_store_every_message_once(backend: Backend) -> None:
    """A unit's replicas write one output stream, each through its own producer, with
    automatic ids. On ASAP::O each producer counted from the last id the service held when
    it first wrote, so their ids collided: the service refused one message of each pair, the
    replicas' flush failed and they were restarted until they got through by luck."""
    stream = backend.stream()
    transport = backend.transport
    with transport.producer(backend.source) as first, transport.producer(backend.source) as other:
        for n in range(20):  # interleaved, as two replicas' batches are
            first.send(stream, b"a", {"who": "first", "n": n})
            other.send(stream, b"b", {"who": "other", "n": n})
        first.flush(30)
        other.flush(30)
    with transport.consumer(backend.source, backend.group()) as consumer:
        got = _drain(consumer, stream, timeout=1 + backend.settle)
    assert sorted(m.id for m in got) == list(range(1, 41))
    sent = sorted((m.metadata["who"], m.metadata["n"]) for m in got)
    assert sent == sorted((who, n) for who in ("first", "other") for n in range(20))


def test_contract_no_data_yet(backend: Backend) -> None:
    stream = backend.stream()
    with (
        backend.transport.consumer(backend.source, backend.group()) as consumer,
        pytest.raises(NoData) as info,
    ):
        consumer.get_next(stream, timeout=0.2)
    assert isinstance(info.value, TransportError)
    assert isinstance(info.value, PipelinesError)
    assert stream in str(info.value)


def test_contract_each_group_sees_every_message_once(backend: Backend) -> None:
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        for i in range(20):
            producer.send(stream, f"m{i}".encode(), {"i": i})
        producer.flush(10)
    seen = {}
    for group in (backend.group(), backend.group()):
        with backend.transport.consumer(backend.source, group) as consumer:
            msgs = _drain(consumer, stream, timeout=0.5 + backend.settle)
            seen[group] = sorted(m.id for m in msgs)
            # acknowledged messages never come back to the group
            with pytest.raises(NoData):
                consumer.get_next(stream, timeout=0.3)
    assert all(ids == list(range(1, 21)) for ids in seen.values())


def test_contract_consumers_of_one_group_share_the_load(backend: Backend) -> None:
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        for i in range(10):
            producer.send(stream, b"x", {"i": i})
        producer.flush(10)
    a = backend.transport.consumer(backend.source, group)
    b = backend.transport.consumer(backend.source, group)
    try:
        first_a = a.get_next(stream, timeout=1 + backend.settle)
        first_b = b.get_next(stream, timeout=1 + backend.settle)
        # one message is out to one consumer at a time
        assert first_a.id != first_b.id
        a.acknowledge(stream, first_a.id)
        b.acknowledge(stream, first_b.id)
        rest_a = _drain(a, stream, timeout=0.3)
        rest_b = _drain(b, stream, timeout=0.3)
    finally:
        a.close()
        b.close()
    ids = [first_a.id, first_b.id] + [m.id for m in rest_a + rest_b]
    assert sorted(ids) == list(range(1, 11))


def test_contract_unacknowledged_message_is_delivered_again_after_the_lease(
    backend: Backend,
) -> None:
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"payload", {"k": "v"})
        producer.flush(10)
    with backend.transport.consumer(backend.source, group, lease_seconds=1.0) as consumer:
        first = consumer.get_next(stream, timeout=1 + backend.settle)
        assert first.delivery_count == 1
        # leased: not handed out again right away
        with pytest.raises(NoData):
            consumer.get_next(stream, timeout=0.2)
        again = consumer.get_next(stream, timeout=5 + backend.settle)
        assert again.id == first.id
        assert again.delivery_count == 2
        assert bytes(again.payload) == b"payload"
        consumer.acknowledge(stream, again.id)
        consumer.acknowledge(stream, again.id)  # idempotent
        with pytest.raises(NoData):
            consumer.get_next(stream, timeout=1.5)


def test_contract_lease_of_a_dead_consumer_passes_to_another(backend: Backend) -> None:
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"job", None)
        producer.flush(10)
    dead = backend.transport.consumer(backend.source, group, lease_seconds=0.5)
    taken = dead.get_next(stream, timeout=1 + backend.settle)
    dead.close()  # went away without acknowledging
    with backend.transport.consumer(backend.source, group, lease_seconds=0.5) as other:
        again = other.get_next(stream, timeout=5 + backend.settle)
        assert again.id == taken.id
        if backend.kind == "embedded":
            assert again.delivery_count == 2
        other.acknowledge(stream, again.id)


def test_contract_an_extended_lease_keeps_the_message_with_its_consumer(backend: Backend) -> None:
    """Optional: a consumer that offers `extend_lease(stream, id, seconds=None)` (workers renew
    the leases of what a slow unit holds with it) keeps a message from the rest of its group
    for as long as it renews, past the lease."""
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"slow", None)
        producer.flush(10)
    with (
        backend.transport.consumer(backend.source, group, lease_seconds=1.0) as holder,
        backend.transport.consumer(backend.source, group, lease_seconds=1.0) as other,
    ):
        if not hasattr(holder, "extend_lease"):
            pytest.skip(f"the {backend.kind} transport cannot extend a lease")
        msg = holder.get_next(stream, timeout=1 + backend.settle)
        # renewed three times a lease, as a worker does, for three leases
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            holder.extend_lease(stream, msg.id)
            with pytest.raises(NoData):
                other.get_next(stream, timeout=0.3)
        holder.acknowledge(stream, msg.id)
        holder.extend_lease(stream, msg.id)  # acknowledged: nothing to renew, no error
        with pytest.raises(NoData):
            other.get_next(stream, timeout=1.5)


def test_contract_nack_with_delay(backend: Backend) -> None:
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"retry me", None)
        producer.flush(10)
    with backend.transport.consumer(backend.source, group, lease_seconds=30) as consumer:
        msg = consumer.get_next(stream, timeout=1 + backend.settle)
        consumer.nack(stream, msg.id, delay=1.0)
        with pytest.raises(NoData):
            consumer.get_next(stream, timeout=0.3)
        again = consumer.get_next(stream, timeout=5)
        assert again.id == msg.id
        assert again.delivery_count == 2
        consumer.nack(stream, again.id, delay=0.0)
        third = consumer.get_next(stream, timeout=2)
        assert third.id == msg.id
        assert third.delivery_count == 3
        consumer.acknowledge(stream, third.id)


def test_contract_get_by_id_get_last_and_missing_ids(backend: Backend) -> None:
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        for i in (1, 2, 3, 5):
            producer.send(stream, f"m{i}".encode(), {"i": i}, id=i)
        producer.flush(10)
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        assert bytes(consumer.get_by_id(stream, 2, timeout=1 + backend.settle).payload) == b"m2"
        last = consumer.get_last(stream, timeout=1)
        assert (last.id, bytes(last.payload)) == (5, b"m5")
        with pytest.raises(MissingId) as hole:
            consumer.get_by_id(stream, 4)
        assert "4" in str(hole.value)
        with pytest.raises(EndOfStream):
            consumer.get_by_id(stream, 9)
        with pytest.raises(EndOfStream):
            consumer.get_last(backend.stream())
        # random access leaves the group's own progress untouched
        assert len(_drain(consumer, stream, timeout=0.5)) == 4


def test_contract_get_metadata_by_id_is_get_by_id_without_the_payload(backend: Backend) -> None:
    """What a restarted worker reads its outputs' provenance with: the same message as
    `get_by_id` (id, metadata, timestamp, the same errors), its payload None where the backend
    leaves it unread, else the payload."""
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        for i, size in ((1, 5), (2, 3 << 20), (3, 7)):
            producer.send(stream, bytes([i]) * size, {"i": i, "who": {"unit": "u"}}, id=i)
        producer.send(stream, b"m5", {"i": 5}, id=5)
        producer.flush(10)
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        consumer.get_by_id(stream, 5, timeout=1 + backend.settle)
        for i in (1, 2, 3, 5):
            full, meta = consumer.get_by_id(stream, i), consumer.get_metadata_by_id(stream, i)
            assert (meta.id, meta.stream, meta.metadata) == (i, stream, full.metadata)
            assert meta.timestamp == full.timestamp
            assert meta.payload is None or bytes(meta.payload) == bytes(full.payload or b"")
        with pytest.raises(MissingId):
            consumer.get_metadata_by_id(stream, 4)
        with pytest.raises(EndOfStream):
            consumer.get_metadata_by_id(stream, 9)
        # reading by id leaves the group's own progress untouched
        assert len(_drain(consumer, stream, timeout=0.5)) == 4


def test_contract_finished_stream_names_the_next_one(backend: Backend) -> None:
    stream, nxt, group = backend.stream(), backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"a", None)
        producer.send(stream, b"b", None)
        producer.finish_stream(stream, next_stream=nxt)
        producer.send(nxt, b"c", None)
        producer.flush(10)
    with backend.transport.consumer(backend.source, group) as consumer:
        assert len(_drain(consumer, stream, timeout=1 + backend.settle)) == 2
        with pytest.raises(StreamFinished) as info:
            consumer.get_next(stream, timeout=1)
        assert info.value.next_stream == nxt
        assert nxt in str(info.value)
        with pytest.raises(StreamFinished):
            consumer.get_by_id(stream, 3)
        info_ = consumer.stream_info(stream)
        assert (info_.name, info_.last_id, info_.finished, info_.next_stream) == (
            stream,
            2,
            True,
            nxt,
        )
        assert info_.created is not None
        names = {s.name: s for s in consumer.streams()}
        assert {stream, nxt} <= set(names)
        assert not names[nxt].finished
        assert names[nxt].last_id == 1
        assert bytes(consumer.get_next(nxt, timeout=1).payload) == b"c"


def test_contract_late_messages_after_finish_are_still_readable(backend: Backend) -> None:
    stream, group = backend.stream(), backend.group()
    with backend.transport.producer(backend.source) as producer:
        for i in (1, 2, 4):
            producer.send(stream, f"m{i}".encode(), None, id=i)
        producer.finish_stream(stream, last_id=4)
        with backend.transport.consumer(backend.source, group) as consumer:
            assert sorted(m.id for m in _drain(consumer, stream, timeout=1 + backend.settle)) == [
                1,
                2,
                4,
            ]
            # message 3 arrives after the stream was finished, and out of order
            producer.send(stream, b"m3", {"late": True}, id=3)
            producer.flush(10)
            assert bytes(consumer.get_by_id(stream, 3, timeout=1 + backend.settle).payload) == b"m3"
            late = consumer.get_next(stream, timeout=1 + backend.settle)
            assert (late.id, late.metadata) == (3, {"late": True})
            consumer.acknowledge(stream, 3)


def test_contract_stream_and_source_metadata(backend: Backend) -> None:
    stream = backend.stream()
    with backend.transport.producer(backend.source) as producer:
        producer.send(stream, b"x", None)
        producer.set_stream_metadata(stream, {"sample": "Cu foil", "energy_eV": 8979.0})
        producer.set_source_metadata({"beamline": "p65", "operators": ["a", "b"]})
        producer.flush(10)
    time.sleep(backend.settle / 5)
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        assert consumer.get_stream_metadata(stream) == {"sample": "Cu foil", "energy_eV": 8979.0}
        assert consumer.get_source_metadata() == {"beamline": "p65", "operators": ["a", "b"]}


def test_contract_arrays_travel_as_seedee(backend: Backend) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("seedee")
    from asapo_pipelines.transport.formats import encode

    stream = backend.stream()
    arrays = [
        np.arange(24, dtype="<u2").reshape(2, 3, 4),
        np.linspace(0, 1, 1000, dtype="<f8"),
        (np.arange(64 * 64, dtype=np.float32) * 1.5).reshape(64, 64),
    ]
    with backend.transport.producer(backend.source) as producer:
        for array in arrays:
            payload, meta = encode(array, "seedee")
            producer.send(stream, payload, {**meta, "what": "frame"})
        producer.flush(10)
    with backend.transport.consumer(backend.source, backend.group()) as consumer:
        got = sorted(_drain(consumer, stream, timeout=1 + backend.settle), key=lambda m: m.id)
    assert len(got) == 3
    for array, msg in zip(arrays, got, strict=True):
        out = decode_message(msg)
        assert out.dtype == array.dtype
        assert out.shape == array.shape
        assert out.tobytes() == array.tobytes()
        assert msg.metadata["what"] == "frame"


__all__ = [
    "test_contract_an_empty_payload_is_sent_and_read_as_empty",
    "test_contract_an_extended_lease_keeps_the_message_with_its_consumer",
    "test_contract_arrays_travel_as_seedee",
    "test_contract_consumers_of_one_group_share_the_load",
    "test_contract_each_group_sees_every_message_once",
    "test_contract_finished_stream_names_the_next_one",
    "test_contract_get_by_id_get_last_and_missing_ids",
    "test_contract_get_metadata_by_id_is_get_by_id_without_the_payload",
    "test_contract_late_messages_after_finish_are_still_readable",
    "test_contract_lease_of_a_dead_consumer_passes_to_another",
    "test_contract_nack_with_delay",
    "test_contract_no_data_yet",
    "test_contract_send_and_receive_payload_and_metadata",
    "test_contract_stream_and_source_metadata",
    "test_contract_two_producers_of_one_stream_store_every_message_once",
    "test_contract_unacknowledged_message_is_delivered_again_after_the_lease",
]
