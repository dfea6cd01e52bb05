"""A closed ASAP::O producer lets its library threads go (protocol level: DESY's real
asapo_producer wheel against the loopback ASAP::O, tests/asapo/loopback.py).

The wheel registers every producer's `cleanup` with atexit, which keeps the producer, its
request threads and its receiver connections alive until the process exits. A process that
opens and closes producers (a worker's outputs, errors and status; a command) gathered about
seven threads per producer it had closed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

pytest.importorskip("asapo_producer", reason="the asapo extra is not installed")

TOKEN = "close-Tok3n-never-printed"
ROOT = Path(__file__).resolve().parents[2]

# in a process of its own: the loopback's own threads (one per connection) live in the test's
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from asapo_pipelines.transport import TransportError, open_transport

    def threads():
        return len(os.listdir("/proc/self/task"))

    spec = {"endpoint": sys.argv[1], "beamtime": sys.argv[2], "token_env": "CLOSE_TOKEN",
            "request_timeout": 10.0}
    transport = open_transport({"asapo": spec})
    counts = []
    for k in range(6):
        producer = transport.producer(f"src{k}")
        producer.send("default", b"x", {"k": k})
        producer.close()
        # the library's threads end once it is freed: give them a moment on a loaded machine
        end = time.monotonic() + 5
        while time.monotonic() < end and counts and threads() > counts[0]:
            time.sleep(0.05)
        counts.append(threads())
    try:
        producer.send("default", b"y", {})
        after = "sent"
    except TransportError as exc:
        after = str(exc)
    print(json.dumps({"threads": counts, "send_after_close": after}))
    """
)


def test_closing_producers_leaves_no_library_threads_behind_protocol_level() -> None:
    with LoopbackAsapo(TOKEN) as service:
        env = {**os.environ, "CLOSE_TOKEN": TOKEN}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, service.endpoint, service.beamtime],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        # every message was stored before its producer let go
        stored = [service.state.stream_info(f"src{k}", "default")["lastId"] for k in range(6)]
    counts = result["threads"]
    # five more producers opened and closed: as many threads as after the first
    assert counts[-1] <= counts[0], f"threads after each closed producer: {counts}"
    assert stored == [1] * 6
    # a closed producer says so, rather than failing inside the library
    assert result["send_after_close"] == "producer of data source 'src5' is closed"
