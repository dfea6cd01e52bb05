"""Many processes on one embedded store, consumers killed with SIGKILL and restarted."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from asapo_pipelines.transport.embedded import EmbeddedTransport

WORKER = str(Path(__file__).with_name("mp_worker.py"))
PRODUCERS, CONSUMERS, PER_PRODUCER = 4, 4, 5000
TOTAL = PRODUCERS * PER_PRODUCER


def _acked(store: Path) -> int:
    db = sqlite3.connect(f"file:{store / 'mp' / 'index.db'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT count(*) FROM acks WHERE grp='workers'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_killed_consumers_lose_nothing_and_acknowledged_messages_never_return(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    EmbeddedTransport(store)
    rng = random.Random(20000)
    producers = [
        subprocess.Popen([sys.executable, WORKER, "produce", str(store), str(i), str(PER_PRODUCER)])
        for i in range(PRODUCERS)
    ]
    logs = [tmp_path / f"consumer{i}.log" for i in range(CONSUMERS)]
    seeds = iter(range(1000))

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, WORKER, "consume", str(store), str(logs[i]), str(next(seeds))]
        )

    def logged(i: int) -> int:
        return logs[i].stat().st_size if logs[i].exists() else 0

    consumers = [start(i) for i in range(CONSUMERS)]
    since = [0] * CONSUMERS  # each consumer's log size when it was (re)started
    kills = 0
    deadline = time.monotonic() + 150
    try:
        # Kill consumers at random moments while data flows, then let them drain. A victim is
        # one that has taken a message since it started: it works on one (and may hold more
        # leases) almost all the time, so its leases come back. Killing a consumer still
        # importing, or one idle after the flow, would prove nothing about leases.
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 0.9))
            working = [i for i in range(CONSUMERS) if logged(i) > since[i]]
            if kills < 12 and working:
                victim = rng.choice(working)
                consumers[victim].kill()
                consumers[victim].wait()
                since[victim] = logged(victim)
                consumers[victim] = start(victim)
                kills += 1
            elif all(p.poll() is not None for p in producers) and _acked(store) >= TOTAL:
                break
        assert all(p.wait(timeout=60) == 0 for p in producers), "a producer failed"
    finally:
        for p in consumers + producers:
            if p.poll() is None:
                p.kill()
                p.wait()

    db = sqlite3.connect(store / "mp" / "index.db")
    ids = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]
    acks = [r[0] for r in db.execute("SELECT id FROM acks WHERE grp='workers' ORDER BY id")]
    inflight = db.execute("SELECT count(*) FROM inflight").fetchone()[0]
    origins = set(db.execute("SELECT meta FROM messages"))
    db.close()

    assert ids == list(range(1, TOTAL + 1)), "messages lost or ids not dense"
    assert len(origins) == TOTAL  # every (producer, n) exactly once
    assert acks == ids, "not every message was acknowledged exactly once by the group"
    assert inflight == 0

    got_at: dict[int, list[int]] = defaultdict(list)
    first_ack: dict[int, int] = {}
    redelivered = 0
    for log in logs:
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue  # a line cut by SIGKILL
            assert parts[0] != "BAD", f"message {parts[1]} had a corrupted payload"
            if parts[0] == "GOT" and len(parts) == 4:
                got_at[int(parts[1])].append(int(parts[3]))
                redelivered += int(parts[2]) > 1
            elif parts[0] == "ACK" and len(parts) == 3:
                mid, t = int(parts[1]), int(parts[2])
                first_ack[mid] = min(t, first_ack.get(mid, t))
    assert kills == 12
    # an acknowledged message is never handed out again
    for mid, t_ack in first_ack.items():
        assert max(got_at[mid]) <= t_ack, f"message {mid} was delivered after its ack"
    # killed consumers held leases: their messages came back with a higher delivery count
    assert redelivered > 0
