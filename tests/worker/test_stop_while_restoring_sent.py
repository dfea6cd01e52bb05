"""A source that restores its state from what it sent (`restore` of each message an earlier run
sent) stops at a SIGTERM between two of them, as a processor does between two inputs
(tests/worker/test_stop_while_restoring.py); the next start restores them all again."""

from __future__ import annotations

import logging
import os
import signal
import sys
import types

import pytest

from asapo_pipelines.sdk import Source, describe, out
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.runtime import Worker

COUNT = 10
#: the restored message at which the test's SIGTERM arrives
STOP_AT = 3


class Numbers(Source):
    """Sends 1..COUNT keyed; its `restore` notes each message and, in the run told to,
    sends its own process a SIGTERM at the STOP_AT-th, as `pipeline stop` would."""

    restores_state = True
    stop_at = 0

    def on_start(self):
        self.restored = []

    def restore(self, message):
        self.restored.append(message.value["n"])
        if len(self.restored) == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    def run(self):
        for n in range(1, COUNT + 1):
            self.emit("numbers", {"n": n}, key=str(n))

    def summary(self):
        return {"restored": self.restored}


MODULE = types.ModuleType("stop_while_restoring_sent_units")
MODULE.Numbers = Numbers
sys.modules[MODULE.__name__] = MODULE
NUMBERS = describe(
    "test.numbers",
    kind="connector",
    summary="sends numbers, restores what it sent",
    runtime=f"{MODULE.__name__}:Numbers",
    outputs=[out("numbers")],
)


@pytest.fixture
def own_handlers():
    """The worker installs its SIGTERM and SIGINT handlers in this process: put them back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def run(store, monkeypatch, stop_at=0):
    """One worker of the source in this process's main thread, its signal handlers installed
    as `pipeline worker` installs them; (final state, the unit's restored numbers)."""
    monkeypatch.setattr(Numbers, "stop_at", stop_at)
    worker = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        NUMBERS,
        {},
        pipeline="demo",
        instance="count",
        outputs={"numbers": "numbers"},
        status_interval=0.2,
        linger=0.1,
    )
    worker.install_signal_handlers()
    try:
        state = worker.run()
    finally:
        worker.transport.close()
    return state, worker.runner.unit.restored


def sent(store):
    """The numbers on the source's output, in the order sent."""
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("numbers", "r") as c:
        messages = [
            c.get_by_id("default", i) for i in range(1, c.stream_info("default").last_id + 1)
        ]
        return [decode(m.payload, m.metadata)["n"] for m in messages]


def final_state(store):
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer("demo.status", "r") as c,
    ):
        return c.get_last("count.0").metadata["state"]


def test_a_source_stopped_while_restoring_what_it_sent_stops_there(
    tmp_path, monkeypatch, caplog, own_handlers
):
    store = tmp_path / "store"
    assert run(store, monkeypatch) == ("finished", [])
    caplog.set_level(logging.INFO, logger="asapo_pipelines.worker")
    state, restored = run(store, monkeypatch, stop_at=STOP_AT)
    assert (state, restored, final_state(store)) == ("stopped", [1, 2, 3], "stopped")
    assert (
        f"demo/count stopped while restoring its state: {STOP_AT} of {COUNT} messages it sent "
        "restored; its next start restores them all again"
    ) in caplog.messages
    state, restored = run(store, monkeypatch)
    assert (state, restored) == ("finished", list(range(1, COUNT + 1)))
    assert sent(store) == list(range(1, COUNT + 1))  # each sent once
