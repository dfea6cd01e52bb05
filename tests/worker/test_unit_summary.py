"""A unit's `summary()` reaches the worker's final status record and the CLI's lines; a source's
`report_error()` reaches the error stream once, also across restarts."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from math import inf, nan

from asapo_pipelines.sdk import Processor, Source, describe, inp, out
from asapo_pipelines.testing.harness import UnitHarness
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.naming import errors_source, status_source
from asapo_pipelines.worker.runtime import Worker
from asapo_pipelines.worker.status import Counters, StatusPublisher, summary_lines


class Counting(Source):
    """Sends 0..4; reports 3 as bad; says what it did."""

    def on_start(self):
        self.sent = []

    def run(self):
        for i in range(5):
            if i == 3:
                self.report_error(ValueError(f"item {i} is malformed"), key=f"item-{i}")
                continue
            self.emit(None, {"n": i}, key=str(i))
            self.sent.append(i)

    def summary(self):
        return {"sent": len(self.sent), "items": [{"n": n} for n in self.sent[:2]]}


class Doubling(Processor):
    def on_start(self):
        self.total = 0

    def process(self, message):
        self.total += message.value["n"]
        return {"n": 2 * message.value["n"]}

    def summary(self):
        return {"total": self.total, "groups": {"all": {"count": 4}}}


class Summing(Doubling):
    """Keeps a running total in memory: a restarted worker restores it."""

    restores_state = True

    def restore(self, message):
        self.total += message.value["n"]


class Remembering(Counting):
    """A source that learns what its earlier runs sent (`restore`), and says so."""

    restores_state = True

    def on_start(self):
        super().on_start()
        self.restored = []

    def restore(self, message):
        self.restored.append((message.port, message.key, message.value["n"]))

    def summary(self):
        return {"restored": self.restored}


class BadSummary(Processor):
    def process(self, message):
        return message.value

    def summary(self):
        return {"not json": object()}


class Finishing(Source):
    """Its summary says whether it was shut down. While the status thread takes a record after
    `run` ended, `on_shutdown` waits for that read, and the read holds what it took a while."""

    def on_start(self):
        self.phase = "running"
        self.read_after_run = threading.Event()

    def run(self):
        self.emit(None, {"n": 0}, key="0")
        self.phase = "sent"

    def on_shutdown(self):
        self.read_after_run.wait(5)
        self.phase = "shut down"

    def summary(self):
        phase = self.phase
        if phase == "sent" and threading.current_thread().name == "status":
            self.read_after_run.set()
            time.sleep(1.0)  # the final summary is taken meanwhile
        return {"phase": phase}


class Averaging(Processor):
    """Its mean is NaN before the first value and once a value was NaN (0 / 0); refuses 2."""

    def on_start(self):
        self.values = []

    def process(self, message):
        if message.value["n"] == 2:
            raise ValueError("2 is refused")
        self.values.append(message.value["n"] / message.value["n"] if message.value["n"] else nan)
        return {"n": message.value["n"]}

    def summary(self):
        mean = sum(self.values) / len(self.values) if self.values else nan
        return {"count": len(self.values), "mean": mean, "limits": [-inf, inf]}


MODULE = types.ModuleType("summary_test_units")
MODULE.Counting, MODULE.Doubling, MODULE.BadSummary = Counting, Doubling, BadSummary
MODULE.Summing, MODULE.Remembering = Summing, Remembering
MODULE.Finishing = Finishing
MODULE.Averaging = Averaging
sys.modules[MODULE.__name__] = MODULE

SOURCE = describe(
    "test.counting",
    kind="connector",
    summary="counts",
    runtime="summary_test_units:Counting",
    outputs=[out("numbers")],
)
DOUBLE = describe(
    "test.doubling",
    kind="processor",
    summary="doubles",
    runtime="summary_test_units:Doubling",
    inputs=[inp("numbers")],
    outputs=[out("doubled")],
)
SUMMING = describe(
    "test.summing",
    kind="processor",
    summary="sums",
    runtime="summary_test_units:Summing",
    inputs=[inp("numbers")],
    outputs=[out("doubled")],
)
REMEMBERING = describe(
    "test.remembering",
    kind="connector",
    summary="counts and remembers",
    runtime="summary_test_units:Remembering",
    outputs=[out("numbers")],
)
FINISHING = describe(
    "test.finishing",
    kind="connector",
    summary="says when it was shut down",
    runtime="summary_test_units:Finishing",
    outputs=[out("numbers")],
)
BAD = describe(
    "test.bad-summary",
    kind="processor",
    summary="bad summary",
    runtime="summary_test_units:BadSummary",
    inputs=[inp("numbers")],
    outputs=[out("same")],
)
AVERAGING = describe(
    "test.averaging",
    kind="processor",
    summary="a mean that can be NaN",
    runtime="summary_test_units:Averaging",
    inputs=[inp("numbers")],
    outputs=[out("ratios")],
)


def run_worker(store, descriptor, instance, **wiring):
    worker = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        descriptor,
        {},
        pipeline="demo",
        instance=instance,
        status_interval=0.2,
        linger=0.1,
        **wiring,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    worker.transport.close()
    return worker


def read_all(store, source, stream):
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(source, "reader") as c,
    ):
        last = c.stream_info(stream).last_id
        return [c.get_by_id(stream, i) for i in range(1, last + 1)]


def test_harness_result_holds_the_summary_and_reported_errors():
    result = UnitHarness(SOURCE).run()
    assert [v["n"] for v in result.values("numbers")] == [0, 1, 2, 4]
    assert result.summary == {"sent": 4, "items": [{"n": 0}, {"n": 1}]}
    (record,) = result.errors
    assert (record["key"], record["hook"], record["error"]) == (
        "item-3",
        "run",
        "item 3 is malformed",
    )
    assert record["exception"] == "builtins.ValueError"


def test_final_status_carries_the_summary_and_errors_are_reported_once(tmp_path):
    store = tmp_path / "store"
    run_worker(store, SOURCE, "count", outputs={"numbers": "numbers"})
    run_worker(store, DOUBLE, "double", inputs={"numbers": "numbers"}, outputs={"doubled": "d"})
    final = read_all(store, status_source("demo"), "double.0")[-1].metadata
    assert final["state"] == "finished"
    assert final["summary"] == {"total": 7, "groups": {"all": {"count": 4}}}
    source_final = read_all(store, status_source("demo"), "count.0")[-1].metadata
    assert source_final["summary"]["sent"] == 4
    assert source_final["errors"] == 1
    errors = read_all(store, errors_source("demo"), "count")
    assert [decode(m.payload, m.metadata)["key"] for m in errors] == ["item-3"]
    # a restarted source sends nothing twice and reports the bad item once
    run_worker(store, SOURCE, "count", outputs={"numbers": "numbers"})
    assert len(read_all(store, "numbers", "default")) == 4
    assert len(read_all(store, errors_source("demo"), "count")) == 1
    lines = summary_lines([source_final, final])
    assert lines == [
        "count: sent 4",
        "  items:",
        "    n 0",
        "    n 1",
        "double: total 7",
        "  groups:",
        "    all: count 4",
    ]


def test_a_summary_that_is_not_json_is_left_out(tmp_path):
    result = UnitHarness(BAD).run([{"n": 1}])
    assert result.summary == {}
    assert result.values("same") == [{"n": 1}]


def test_a_restarted_unit_restores_its_state_from_the_inputs_it_processed(tmp_path):
    store = tmp_path / "store"
    run_worker(store, SOURCE, "count", outputs={"numbers": "numbers"})
    wiring = {"inputs": {"numbers": "numbers"}, "outputs": {"doubled": "d"}}
    first = run_worker(store, SUMMING, "sum", **wiring)
    assert (first.counters.received, first.counters.summary["total"]) == (4, 7)
    again = run_worker(store, SUMMING, "sum", **wiring)
    # nothing new to process, yet the total is what the first run had summed
    assert (again.counters.received, again.counters.summary["total"]) == (0, 7)
    # a unit without restores_state starts from nothing
    plain = run_worker(store, DOUBLE, "sum", **wiring)
    assert plain.counters.summary["total"] == 0


def test_a_restarted_source_restores_its_state_from_the_messages_it_sent(tmp_path):
    """A source has no inputs: its `restore` gets what an earlier run of it sent, in order,
    with the key it sent each under (`Message.key`); another source's messages are not its."""
    store = tmp_path / "store"
    first = run_worker(store, REMEMBERING, "count", outputs={"numbers": "numbers"})
    assert first.counters.summary == {"restored": []}
    run_worker(store, SOURCE, "other", outputs={"numbers": "numbers"})  # a second writer
    again = run_worker(store, REMEMBERING, "count", outputs={"numbers": "numbers"})
    assert again.counters.summary == {"restored": [("numbers", str(n), n) for n in (0, 1, 2, 4)]}
    assert len(read_all(store, "numbers", "default")) == 8  # nothing sent twice


def test_the_final_record_carries_the_summary_taken_after_the_unit_shut_down(tmp_path):
    """A running source's summary is taken by the status thread for each record: one it was
    taking when the unit ended must not replace the final one (which `pipeline run` prints)."""
    store = tmp_path / "store"
    worker = run_worker(store, FINISHING, "finish", outputs={"numbers": "numbers"})
    final = read_all(store, status_source("demo"), "finish.0")[-1].metadata
    assert (final["state"], final["summary"]) == ("finished", {"phase": "shut down"})
    assert worker.counters.summary == {"phase": "shut down"}


def test_a_nan_in_the_summary_keeps_the_counters_and_the_errors_in_the_status(tmp_path):
    """numpy gives NaN freely (a mean over nothing, a NaN input): JSON has no NaN, and a summary
    holding one took the whole status record with it, so the table, `pipeline runs` and the
    viewer showed the unit as having done nothing, with no error. The summary says `nan`."""
    store = tmp_path / "store"
    run_worker(store, SOURCE, "count", outputs={"numbers": "numbers"})  # 0, 1, 2, 4
    worker = run_worker(
        store, AVERAGING, "avg", inputs={"numbers": "numbers"}, outputs={"ratios": "ratios"}
    )
    records = [m.metadata for m in read_all(store, status_source("demo"), "avg.0")]
    final = records[-1]
    assert (final["state"], final["processed"], final["errors"]) == ("finished", 3, 1)
    assert final["summary"] == {"count": 3, "mean": "nan", "limits": ["-inf", "inf"]}
    assert worker.counters.summary == final["summary"]
    # the records sent while it ran (its summary after on_start is NaN too) carried counters
    assert len(records) >= 2
    assert all("processed" in r for r in records)
    assert summary_lines([final]) == ["avg: count 3, mean nan", "  limits:", "    -inf", "    inf"]


def test_a_summary_the_transport_refuses_leaves_the_counters_in_the_record(tmp_path, caplog):
    """The publisher's own guard, for a summary that reaches it unsendable (here set directly,
    as no runner path hands one over now): the record goes without it, said once."""
    caplog.set_level(logging.WARNING, logger="asapo_pipelines.worker")
    transport = open_transport({"embedded": {"path": str(tmp_path / "store")}})
    counters = Counters(unit="test.averaging", instance="avg", replica=0, processed=5, errors=2)
    counters.summary = {"mean": nan}
    publisher = StatusPublisher(transport, "demo", counters, interval=0.05)
    publisher.start()
    time.sleep(0.3)  # a few beats, each refusing the summary
    publisher.stop("finished")
    transport.close()
    records = [m.metadata for m in read_all(tmp_path / "store", status_source("demo"), "avg.0")]
    assert len(records) >= 2
    assert (records[-1]["processed"], records[-1]["errors"]) == (5, 2)
    assert not any("summary" in r for r in records)
    said = [r.message for r in caplog.records if "summary is left out" in r.message]
    assert len(said) == 1
    assert "not JSON" in said[0]
