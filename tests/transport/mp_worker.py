"""A producer or consumer process for the multi-process test (run as a script).

    python mp_worker.py produce STORE INDEX COUNT
    python mp_worker.py consume STORE LOGFILE SEED

Consumers log "GOT id count t" before and "ACK id t" after each acknowledgement (t from the
system-wide monotonic clock) so the test can check that nothing acknowledged came back.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time

from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.transport.errors import NoData, StreamFinished

STREAM = "frames"


def payload_for(producer: int, n: int) -> bytes:
    # every 25th message is big enough to go to a payload file, the rest stay inline
    size = 40_000 if n % 25 == 0 else 200
    seed = hashlib.sha256(f"{producer}:{n}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def produce(store: str, index: int, count: int) -> None:
    rng = random.Random(index)
    with EmbeddedTransport(store).producer("mp") as producer:
        n = 0
        while n < count:
            batch = min(count - n, rng.choice([1, 1, 1, 10, 50]))
            items = [
                (payload_for(index, k), {"producer": index, "n": k}) for k in range(n, n + batch)
            ]
            if batch == 1:
                producer.send(STREAM, items[0][0], items[0][1])
            else:
                producer.send_many(STREAM, items)
            n += batch


def consume(store: str, logfile: str, seed: int) -> None:
    rng = random.Random(seed)
    log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    transport = EmbeddedTransport(store)
    consumer = transport.consumer("mp", "workers", lease_seconds=1.0, prefetch=rng.randint(1, 8))
    while True:
        try:
            msg = consumer.get_next(STREAM, timeout=0.5)
        except (NoData, StreamFinished):
            continue
        os.write(log, f"GOT {msg.id} {msg.delivery_count} {time.monotonic_ns()}\n".encode())
        expected = payload_for(msg.metadata["producer"], msg.metadata["n"])
        if bytes(msg.payload) != expected:
            os.write(log, f"BAD {msg.id}\n".encode())
        # "work" on the message while holding its lease: at most 2,000 msg/s for four
        # consumers, so the 20,000 messages flow for longer than the test's twelve kills take
        time.sleep(0.002)
        consumer.acknowledge(STREAM, msg.id)
        os.write(log, f"ACK {msg.id} {time.monotonic_ns()}\n".encode())


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
