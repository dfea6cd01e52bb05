"""A unit that keeps state looks up, before it sends what `on_restored` gives, whether an
earlier run sent it. That look-up read the last output with its payload: once that payload file
was gone (deleted by hand, lost with a disk), the unit failed at start-up, restart after
restart, and the run failed with "has no payload file any more" (an outside tester: a merge
whose outputs' payloads were gone and one of whose inputs was damaged). The keys are in the
metadata, which the store still holds. A real worker on the embedded store, run twice."""

from __future__ import annotations

import sys
import threading
import types

from asapo_pipelines.sdk import Processor, describe, inp, out
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.embedded import INLINE_MAX
from asapo_pipelines.transport.formats import decode, encode
from asapo_pipelines.worker.runtime import Worker

BIG = "n" * (INLINE_MAX + 1)  # larger than the store keeps in its index: a payload file


class Collect(Processor):
    """Keeps the numbers it took; at each start sends what it holds, keyed by it."""

    restores_state = True

    def on_start(self):
        self.numbers = set()

    def restore(self, message):
        self.numbers.add(message.value)

    def process(self, message):
        self.numbers.add(message.value)
        self.emit("out", {"number": message.value, "padding": BIG})

    def on_restored(self):
        held = sorted(self.numbers)
        self.emit("out", {"held": held, "padding": BIG}, key=f"held:{held}")


MODULE = types.ModuleType("restore_damaged_outputs_units")
MODULE.Collect = Collect
sys.modules[MODULE.__name__] = MODULE


def send(store, stream, values):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for value in values:
            p.send(stream, *encode(value, "json"))
        p.finish_stream(stream)


def run_worker(store):
    w = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        describe(
            "test.collect",
            kind="processor",
            summary="holds numbers",
            runtime="restore_damaged_outputs_units:Collect",
            inputs=[inp("numbers")],
            outputs=[out("out")],
        ),
        {},
        pipeline="demo",
        instance="collect",
        inputs={"numbers": "numbers"},
        outputs={"out": "held"},
        status_interval=0.2,
        linger=0.1,
    )
    failure = []

    def target():
        try:
            w.run()
        except Exception as exc:  # the worker's start-up failure, shown by the assertion
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    w.transport.close()
    assert failure == []
    return w.counters


def held(store):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("held", "c") as c:
        found = []
        for info in c.streams():
            for i in range(1, info.last_id + 1):
                meta = c.get_metadata_by_id(info.name, i)
                try:
                    value = decode(c.get_by_id(info.name, i).payload, meta.metadata)
                except Exception:
                    continue  # its payload file is gone
                if "held" in value:
                    found.append(value["held"])
        return found


def test_a_unit_whose_outputs_lost_their_payload_files_still_starts(tmp_path):
    store = tmp_path / "store"
    send(store, "s1", [1, 2])
    run_worker(store)
    files = sorted((store / "held").rglob("*.seg"))
    assert files  # the outputs' payloads are files, as large results are
    for path in files:
        path.unlink()
    send(store, "s2", [3])
    counters = run_worker(store)
    # it started, restored 1 and 2 (its inputs are intact), sent what it holds, took 3
    assert counters.processed == 1
    assert held(store) == [[1, 2]]
