"""A unit's summary counts on across the sessions of one run: a worker of a resumed session is
handed (`carried_summary`) what its replica's summary was when the run's earlier sessions
ended, as the run's record has it, and never another run's, though a reprocess that ran in
between left the last record in the pipeline's status stream."""

from __future__ import annotations

import json
import sys
import threading
import types

from asapo_pipelines.runs.store import RunStore
from asapo_pipelines.sdk import Processor, describe, inp, out
from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.naming import status_source, status_stream
from asapo_pipelines.worker.runtime import Worker


class Tally(Processor):
    """Counts the messages it processed in its run, on from what it was handed."""

    def on_start(self):
        self.handed = dict(self.context.carried_summary)
        self.seen = int(self.handed.get("seen", 0))

    def process(self, message):
        self.seen += 1
        return message.value

    def summary(self):
        return {"seen": self.seen}


MODULE = types.ModuleType("session_summary_units")
MODULE.Tally = Tally
sys.modules[MODULE.__name__] = MODULE
TALLY = describe(
    "test.tally",
    kind="processor",
    summary="tallies",
    runtime="session_summary_units:Tally",
    inputs=[inp("numbers")],
    outputs=[out("same")],
)


def send(store, stream: str, values: list[int]) -> None:
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in values:
            p.send(stream, json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream(stream)


def run_tally(store, run: dict) -> Worker:
    worker = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        TALLY,
        {},
        pipeline="demo",
        instance="tally",
        inputs={"numbers": "numbers"},
        outputs={"same": "same"},
        status_interval=0.2,
        linger=0.1,
        run=run,
        until_stopped=False,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    worker.transport.close()
    return worker


def test_a_resumed_session_counts_on_from_its_run_not_from_another_run(tmp_path):
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t:
        runs = RunStore(t, "demo")
        r1 = runs.begin(pipeline_file=None, text="demo", configurations={}, overrides={})
    send(store, "first", [1, 2, 3])
    first = run_tally(store, {"run": r1.id, "started": r1.started})
    assert first.counters.summary == {"seen": 3}
    with open_transport({"embedded": {"path": str(store)}}) as t:
        runs = RunStore(t, "demo")
        runs.end(runs.get(r1.id), "stopped", summaries={"tally": first.counters.summary})
        # a reprocess ran in between: the replica's last status record is that run's
        r2 = runs.begin(
            pipeline_file=None, text="demo", configurations={}, overrides={}, mode="reprocess"
        )
        with t.producer(status_source("demo")) as producer:
            other = {"instance": "tally", "replica": 0, "state": "finished", "processed": 40}
            other.update(session=f"{r2.id}@{r2.started}", summary={"seen": 40})
            producer.send(status_stream("tally", 0), None, other)
        runs.end(r2, "finished", summaries={"tally": {"seen": 40}})
        resumed = runs.resume(runs.get(r1.id))
    send(store, "second", [4, 5])

    again = run_tally(
        store, {"run": r1.id, "started": r1.started, "resumed_at": resumed.session["time"]}
    )

    unit = again.runner.unit
    assert unit.handed == {"seen": 3}  # what r1 left, not the reprocess's 40
    assert again.counters.processed == 2  # the counters are still the session's own
    assert again.counters.summary == {"seen": 5}  # the run's summary: every message it took
    # a new run's first session starts from nothing, whatever the status stream holds
    with open_transport({"embedded": {"path": str(store)}}) as t:
        r3 = RunStore(t, "demo").begin(
            pipeline_file=None, text="demo", configurations={}, overrides={}
        )
    fresh = run_tally(store, {"run": r3.id, "started": r3.started})
    assert fresh.runner.unit.handed == {}
