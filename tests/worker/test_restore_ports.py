"""`restore_ports`: a restarted worker hands `restore()` every message of a unit's declared
state-only input ports (feedback that leaves no output), after the inputs it processed."""

from __future__ import annotations

import sys
import threading
import types

import pytest

from asapo_pipelines.sdk import Processor, describe, inp, out
from asapo_pipelines.sdk.runner import UnitStartError
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.embedded import INLINE_MAX
from asapo_pipelines.transport.formats import encode
from asapo_pipelines.worker.runtime import Worker


class Tracking(Processor):
    """Emits for each number and for the note "b"; notes and chatter otherwise leave no output.
    Says what `restore` was handed, in order."""

    restores_state = True
    restore_ports = ("notes",)

    def on_start(self):
        self.restored = []

    def restore(self, message):
        self.restored.append([message.port, message.stream, message.value])

    def process(self, message):
        if message.port == "numbers" or message.value == "b":
            return {"seen": message.value}
        return None

    def summary(self):
        return {"restored": self.restored}


class Misnamed(Tracking):
    restore_ports = ("note",)


MODULE = types.ModuleType("restore_ports_test_units")
MODULE.Tracking, MODULE.Misnamed = Tracking, Misnamed
sys.modules[MODULE.__name__] = MODULE


def tracking(runtime):
    return describe(
        "test.tracking",
        kind="processor",
        summary="remembers notes",
        runtime=f"restore_ports_test_units:{runtime}",
        inputs=[inp("numbers"), inp("notes"), inp("chatter")],
        outputs=[out("seen")],
    )


WIRING = {
    "inputs": {"numbers": "numbers", "notes": "notes", "chatter": "chatter"},
    "outputs": {"seen": "seen"},
}


def send(store, source, stream, values):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer(source) as p:
        for value in values:
            p.send(stream, *encode(value, "json"))
        p.finish_stream(stream)


def worker(store, runtime):
    return Worker(
        open_transport({"embedded": {"path": str(store)}}),
        tracking(runtime),
        {},
        pipeline="demo",
        instance="track",
        status_interval=0.2,
        linger=0.1,
        **WIRING,
    )


def run_worker(store, runtime="Tracking"):
    w = worker(store, runtime)
    thread = threading.Thread(target=w.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    w.transport.close()
    return w.counters


def test_every_message_of_a_restore_port_is_replayed_once_after_the_named_inputs(tmp_path):
    store = tmp_path / "store"
    send(store, "numbers", "default", [1, 2, 3])
    send(store, "notes", "s1", ["a", "b"])
    send(store, "notes", "s2", ["c"])
    send(store, "chatter", "default", ["x", "y"])
    first = run_worker(store)
    # a first start has nothing to restore, though its inputs were there already
    assert (first.received, first.summary["restored"]) == (8, [])
    again = run_worker(store)
    assert again.received == 0
    assert again.summary["restored"] == [
        # the inputs its outputs name, in the order the outputs were written ...
        ["numbers", "default", 1],
        ["numbers", "default", 2],
        ["numbers", "default", 3],
        # ... then those that made no output, in the order processed: the chatter (its port
        # is not declared; the notes are, and come whole) ...
        ["chatter", "default", "x"],
        ["chatter", "default", "y"],
        # ... then every note, stream by stream, by id: "b", which made an output, only once
        ["notes", "s1", "a"],
        ["notes", "s1", "b"],
        ["notes", "s2", "c"],
    ]


def test_a_restore_port_that_is_no_input_port_stops_the_worker(tmp_path):
    store = tmp_path / "store"
    for source in WIRING["inputs"]:  # all there and finished: an old worker would just end
        send(store, source, "default", [1])
    w = worker(store, "Misnamed")
    try:
        with pytest.raises(UnitStartError, match="'note' in restore_ports, which is not one of"):
            w.run()
    finally:
        w.transport.close()


def _error_records(store):
    from asapo_pipelines.transport import EndOfStream
    from asapo_pipelines.transport.formats import decode
    from asapo_pipelines.worker.naming import errors_source

    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(errors_source("demo"), "check") as c,
    ):
        try:
            last = c.get_last("track").id
        except EndOfStream:
            return []
        return [
            decode(m.payload, m.metadata)
            for m in map(c.get_by_id, ["track"] * last, range(1, last + 1))
        ]


def test_inputs_damaged_since_they_were_processed_are_reported_once_not_left_out_silently(
    tmp_path, caplog
):
    """A payload file deleted after its messages were processed: the restarted unit's state
    leaves those inputs out (it cannot read them), so that is said: a warning in its log and
    one error record per input, counted in `errors`, and not again at the next start."""
    store = tmp_path / "store"
    # larger than the store keeps in its index rows: their payloads go to a file
    big = "n" * (INLINE_MAX + 1)
    send(store, "numbers", "default", [big, big, big])
    send(store, "notes", "s1", ["a"])
    send(store, "chatter", "default", ["x"])
    run_worker(store)
    payloads = sorted((store / "numbers").rglob("*.seg"))
    assert payloads, sorted(p.relative_to(store) for p in store.rglob("*"))
    for path in payloads:
        path.unlink()
    with caplog.at_level("WARNING", logger="asapo_pipelines.worker"):
        again = run_worker(store)
    assert again.summary["restored"] == [["chatter", "default", "x"], ["notes", "s1", "a"]]
    assert again.errors == 3
    records = _error_records(store)
    assert [(r["hook"], r["message"]["port"], r["message"]["id"]) for r in records] == [
        ("restore", "numbers", 1),
        ("restore", "numbers", 2),
        ("restore", "numbers", 3),
    ]
    assert records[0]["error"].startswith(
        "input numbers/default/1 cannot be read to restore the state of demo/track ("
    )
    assert records[0]["error"].endswith("); its results from now on leave that input out")
    warned = [r.getMessage() for r in caplog.records if "cannot be read any more" in r.getMessage()]
    assert warned == [
        "demo/track: 3 input(s) it processed before cannot be read any more (numbers/default/1, "
        "numbers/default/2, numbers/default/3: damaged or removed from the store); its state and "
        "its results from now on leave them out; see `pipeline tail FILE errors`"
    ]
    third = run_worker(store)
    assert third.errors == 0
    assert len(_error_records(store)) == 3
