"""`restore_sent`: a restarted worker hands a processor that defines it each output an earlier
run of it sent, oldest first, before the `restore` calls of the inputs; a unit that sends a
result only when it differs from the last one it sent knows which one that was."""

from __future__ import annotations

import sys
import types

from asapo_pipelines.sdk import Processor, describe, inp, out
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode, encode
from asapo_pipelines.worker.runtime import Worker

from helpers import run_to_end


class Highest(Processor):
    """Sends the highest number so far, only when it differs from the last it sent."""

    restores_state = True

    def on_start(self):
        self.highest = None
        self.last_sent = None
        self.calls = []

    def restore_sent(self, message):
        self.calls.append(["sent", message.port, message.key, message.value["highest"]])
        self.last_sent = message.value["highest"]

    def restore(self, message):
        self.calls.append(["input", message.port, message.value])
        self.highest = max(message.value, self.highest or message.value)

    def process(self, message):
        self.highest = max(message.value, self.highest or message.value)
        if self.highest != self.last_sent:
            self.last_sent = self.highest
            self.emit("highest", {"highest": self.highest}, key=f"highest:{self.highest}")

    def summary(self):
        return {"calls": self.calls}


class Forgetful(Highest):
    """The same without `restore_sent`: it cannot tell which result it sent last."""

    restore_sent = Processor.restore_sent


MODULE = types.ModuleType("restore_sent_test_units")
MODULE.Highest, MODULE.Forgetful = Highest, Forgetful
sys.modules[MODULE.__name__] = MODULE


def send(store, values, stream):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for value in values:
            p.send(stream, *encode(value, "json"))
        p.finish_stream(stream)


def run_worker(store, runtime="Highest"):
    descriptor = describe(
        "test.highest",
        kind="processor",
        summary="the highest number so far",
        runtime=f"restore_sent_test_units:{runtime}",
        inputs=[inp("numbers")],
        outputs=[out("highest")],
    )
    w = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        descriptor,
        {},
        pipeline="demo",
        instance="top",
        inputs={"numbers": "numbers"},
        outputs={"highest": "highest"},
        status_interval=0.2,
        linger=0.1,
    )
    return run_to_end(w)


def sent(store):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("highest", "c") as c:
        return [
            decode(m.payload, m.metadata)["highest"]
            for info in c.streams()
            for m in (c.get_by_id(info.name, i) for i in range(1, info.last_id + 1))
        ]


def test_what_an_earlier_run_sent_comes_before_its_inputs_and_no_result_is_sent_twice(tmp_path):
    store = tmp_path / "store"
    send(store, [3, 1, 5], "s1")
    first = run_worker(store)
    assert first.summary["calls"] == []  # a first start has nothing to restore
    assert sent(store) == [3, 5]

    send(store, [2, 4], "s2")  # still 5: nothing new to say
    again = run_worker(store)
    assert again.summary["calls"] == [
        # what it sent, oldest first, with the keys it sent them under ...
        ["sent", "highest", "highest:3", 3],
        ["sent", "highest", "highest:5", 5],
        # ... then the inputs those name, then the one that made no output
        ["input", "numbers", 3],
        ["input", "numbers", 5],
        ["input", "numbers", 1],
    ]
    assert sent(store) == [3, 5]


def test_a_unit_without_restore_sent_is_not_handed_its_outputs(tmp_path):
    store = tmp_path / "store"
    send(store, [3, 1, 5], "s1")
    run_worker(store, "Forgetful")
    send(store, [2], "s2")
    again = run_worker(store, "Forgetful")
    assert [c[0] for c in again.summary["calls"]] == ["input", "input", "input"]
    assert sent(store) == [3, 5, 5]  # it could not tell 5 was its last result
