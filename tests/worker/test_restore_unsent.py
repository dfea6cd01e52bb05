"""A unit that keeps state gets back, after a restart, every input it processed: those its
outputs name and those that made no output (an agent that suggests only now and then, a merge
that leaves out a copy). Before, only the inputs named by its outputs' provenance were handed
to `restore`, and a restarted agent went on from part of its history. A real worker on the
embedded store, stopped and started again in the same run."""

from __future__ import annotations

import sys
import types

from asapo_pipelines.sdk import Processor, describe, inp, out
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode, encode
from asapo_pipelines.worker.naming import processed_source, run_sources
from asapo_pipelines.worker.runtime import Worker

from helpers import run_to_end

RUN = {"run": "r1", "started": 1_000_000.0, "fingerprint": "f1"}
SOURCES = run_sources("demo", "r1", ["numbers", "totals"])


class Tally(Processor):
    """Sums its inputs; says the sum only at every third input. A value "bad" fails."""

    restores_state = True

    def on_start(self):
        self.seen: dict[tuple[str, int], int] = {}
        self.restored = []

    def _add(self, message):
        # idempotent: an input processed but not acknowledged comes to `process` again
        self.seen[(message.stream, message.id)] = message.value

    def restore(self, message):
        self.restored.append(message.value)
        self._add(message)

    def process(self, message):
        if message.value == "bad":
            raise ValueError("not a number")
        self._add(message)
        if len(self.seen) % 3 == 0:
            self.emit("total", {"n": len(self.seen), "sum": sum(self.seen.values())})

    def summary(self):
        return {"restored": self.restored, "n": len(self.seen)}


MODULE = types.ModuleType("restore_unsent_test_units")
MODULE.Tally = Tally
sys.modules[MODULE.__name__] = MODULE


def send(store, stream, values):
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.producer(SOURCES["numbers"]) as p,
    ):
        for value in values:
            p.send(stream, *encode(value, "json"))
        p.finish_stream(stream)


def run_worker(store):
    descriptor = describe(
        "test.tally",
        kind="processor",
        summary="a sum said now and then",
        runtime="restore_unsent_test_units:Tally",
        inputs=[inp("numbers")],
        outputs=[out("total")],
    )
    w = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        descriptor,
        {},
        pipeline="demo",
        instance="tally",
        inputs={"numbers": "numbers"},
        outputs={"total": "totals"},
        data_sources=SOURCES,
        run=RUN,
        status_interval=0.2,
        linger=0.1,
        retry=None,
    )
    return run_to_end(w)


def totals(store):
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(SOURCES["totals"], "check") as c,
    ):
        return [
            decode(m.payload, m.metadata)
            for info in c.streams()
            for m in (c.get_by_id(info.name, i) for i in range(1, info.last_id + 1))
        ]


def test_inputs_that_made_no_output_are_restored_after_those_the_outputs_name(tmp_path):
    store = tmp_path / "store"
    send(store, "s1", [1, 2, 3, 4, "bad", 5, 6, 7])
    first = run_worker(store)
    assert (first.processed, first.errors) == (7, 1)
    assert totals(store) == [{"n": 3, "sum": 6}, {"n": 6, "sum": 21}]

    send(store, "s2", [8, 9])
    again = run_worker(store)
    # the inputs its outputs name (3 and 6), then those that made none, in the order
    # processed; not the one that failed: it went to the error stream and changed nothing
    assert again.summary["restored"] == [3, 6, 1, 2, 4, 5, 7]
    # so the ninth number makes the third sum, over all nine
    assert totals(store)[-1] == {"n": 9, "sum": sum(range(1, 10))}

    with open_transport({"embedded": {"path": str(store)}}) as t:
        # the record lives in the run's own namespace: a `--fresh` run starts without it, and
        # pruning the run removes it with the run's streams
        assert processed_source("demo", "r1") in t.data_sources()
        assert processed_source("demo", "r1").startswith("demo.r1.")

    third = run_worker(store)
    assert third.summary["restored"] == [3, 6, 9, 1, 2, 4, 5, 7, 8]  # each once
