"""The worker loop against the real embedded transport, workers running in threads."""

# fixtures are imported from worker_fixtures by name, and pytest passes them as arguments
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from worker_fixtures import sample_catalog  # noqa: F401

from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.naming import errors_source, status_source
from asapo_pipelines.worker.runtime import Worker


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


def make(store: Path, catalog, unit, instance, params=None, inputs=None, outputs=None, **kw):
    cls = kw.pop("cls", Worker)
    return cls(
        open_transport({"embedded": {"path": str(store)}}),
        catalog.get(unit),
        params or {},
        pipeline="demo",
        instance=instance,
        inputs=inputs or {},
        outputs=outputs or {},
        status_interval=kw.pop("status_interval", 0.2),
        **kw,
    )


def start(worker: Worker) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["state"] = worker.run()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def read_all(store: Path, source: str, stream: str = "default") -> list:
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(source, "reader") as c,
    ):
        info = c.stream_info(stream)
        return [c.get_by_id(stream, i) for i in range(1, info.last_id + 1)]


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_chain_with_failures_scans_and_status(tmp_path, sample_catalog):
    store = tmp_path / "store"
    sink_file = tmp_path / "out.jsonl"
    workers = [
        make(
            store,
            sample_catalog,
            "test.numbers",
            "numbers",
            {"count": 30, "scan_size": 10},
            outputs={"numbers": "numbers"},
        ),
        make(
            store,
            sample_catalog,
            "test.tag",
            "tag",
            {"fail_every": 10},
            {"numbers": "numbers"},
            {"tagged": "tagged"},
        ),
        make(
            store,
            sample_catalog,
            "core.jsonl-sink",
            "sink",
            {"path": str(sink_file)},
            {"messages": "tagged"},
        ),
    ]
    runs = [start(w) for w in workers]
    for thread, result in runs:
        thread.join(60)
        assert result == {"state": "finished"}
    lines = [json.loads(line) for line in sink_file.read_text().splitlines()]
    got = sorted(line["metadata"]["provenance"]["inputs"][0]["id"] for line in lines)
    # ids restart in each scan: 1..10 in default, scan-2 and scan-3; id 10 fails in each
    assert len(lines) == 27
    assert got == sorted(list(range(1, 10)) * 3)
    assert {line["stream"] for line in lines} == {"default", "scan-2", "scan-3"}
    errors = read_all(store, errors_source("demo"), "tag")
    records = [decode(m.payload, m.metadata) for m in errors]
    assert sorted(r["message"]["id"] for r in records) == [10, 10, 10]
    assert all("ValueError: cannot tag" in r["traceback"] for r in records)
    # the output streams follow the input scans and are finished with the same chain
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("tagged", "r") as c:
        infos = {i.name: i for i in c.streams()}
    assert infos["default"].finished
    assert infos["default"].next_stream == "scan-2"
    assert infos["scan-3"].finished
    assert infos["scan-3"].next_stream is None
    status = read_all(store, status_source("demo"), "tag.0")
    final = status[-1].metadata
    assert final["state"] == "finished"
    assert (final["received"], final["processed"], final["errors"]) == (30, 27, 3)
    assert workers[1].counters.errors == 3


def test_metadata_json_cannot_hold_is_that_messages_error_not_the_workers(tmp_path, sample_catalog):
    # before, the transport refused it when the batch was written: the worker stopped, and
    # every restart took the same batch again, so the stream never moved past it
    store = tmp_path / "store"
    workers = [
        make(
            store, sample_catalog, "test.numbers", "numbers", {"count": 9}, None, {"numbers": "n"}
        ),
        make(store, sample_catalog, "test.noted", "noted", None, {"numbers": "n"}, {"noted": "o"}),
    ]
    runs = [start(w) for w in workers]
    for thread, result in runs:
        thread.join(60)
        assert result == {"state": "finished"}
    assert [decode(m.payload, m.metadata)["n"] for m in read_all(store, "o")] == [2, 5, 8]
    assert [m.metadata["index"] for m in read_all(store, "o")] == [2, 5, 8]
    errors = read_all(store, errors_source("demo"), "noted")
    why = {r["message"]["id"]: r["error"] for r in (decode(m.payload, m.metadata) for m in errors)}
    assert sorted(why) == [1, 3, 4, 6, 7, 9]  # numbers start at 1: id n carries n
    said = (
        "the metadata unit demo/noted (test.noted) emitted on port 'noted' is not JSON-serializable"
    )
    assert why[3] == f"{said}: Out of range float values are not JSON compliant"
    assert why[4] == f"{said}: Object of type int64 is not JSON serializable"


@pytest.mark.parametrize(
    ("ack_batch", "acked_before_crash", "redelivered"), [(1, [1, 2], 1), (4, [], 4)]
)
def test_redelivered_messages_do_not_produce_second_outputs(
    tmp_path, sample_catalog, ack_batch, acked_before_crash, redelivered
):
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, 6):
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")
    acked: list[int] = []

    class DiesBeforeAck(Worker):
        def _acknowledge(self, port, stream, ids):
            if 3 in ids:
                raise Crash("killed between writing the outputs and acknowledging")
            acked.extend(ids)
            super()._acknowledge(port, stream, ids)

    first = make(
        store,
        sample_catalog,
        "test.tag",
        "tag",
        {},
        {"numbers": "numbers"},
        {"tagged": "tagged"},
        lease_seconds=0.5,
        cls=DiesBeforeAck,
        ack_batch=ack_batch,
    )
    with pytest.raises(Crash):
        first.run()
    assert acked == acked_before_crash
    # the outputs of message 3 (and of the rest of its batch) are written, not acknowledged
    assert len(read_all(store, "tagged")) == len(acked_before_crash) + redelivered
    second = make(
        store,
        sample_catalog,
        "test.tag",
        "tag",
        {},
        {"numbers": "numbers"},
        {"tagged": "tagged"},
        lease_seconds=0.5,
    )
    thread, result = start(second)
    thread.join(60)
    assert result == {"state": "finished"}
    outputs = read_all(store, "tagged")
    ids = [m.metadata["provenance"]["inputs"][0]["id"] for m in outputs]
    assert sorted(ids) == [1, 2, 3, 4, 5]
    assert second.counters.duplicates_skipped == redelivered


def test_late_and_out_of_order_messages_are_processed(tmp_path, sample_catalog):
    store = tmp_path / "store"
    t = open_transport({"embedded": {"path": str(store)}})
    p = t.producer("numbers")
    for n in (1, 2, 3, 5, 6, 8, 9, 10):
        p.send("default", json.dumps({"n": n}).encode(), {"format": "json"}, id=n)
    p.finish_stream("default", last_id=10)
    worker = make(
        store, sample_catalog, "test.tag", "tag", {}, {"numbers": "numbers"}, {"tagged": "tagged"}
    )
    thread, result = start(worker)
    assert wait_for(lambda: worker.counters.processed == 8)
    time.sleep(0.5)
    assert thread.is_alive(), "the worker must wait for the missing ids 4 and 7"
    # after the finish: one past the end, then the holes in reverse order
    for n in (11, 7, 4):
        p.send("default", json.dumps({"n": n}).encode(), {"format": "json"}, id=n)
        time.sleep(0.1)
    thread.join(30)
    assert result == {"state": "finished"}
    ns = sorted(decode(m.payload, m.metadata)["n"] for m in read_all(store, "tagged"))
    assert ns == list(range(1, 12))
    p.close()
    t.close()


def test_replicas_share_the_load_and_each_message_is_processed_once(tmp_path, sample_catalog):
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, 201):
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")
    replicas = [
        make(
            store,
            sample_catalog,
            "test.tag",
            "tag",
            {"sleep": 0.005},
            {"numbers": "numbers"},
            {"tagged": "tagged"},
            replica=r,
        )
        for r in (0, 1)
    ]
    runs = [start(w) for w in replicas]
    for thread, result in runs:
        thread.join(60)
        assert result == {"state": "finished"}
    ids = sorted(m.metadata["provenance"]["inputs"][0]["id"] for m in read_all(store, "tagged"))
    assert ids == list(range(1, 201))
    assert all(w.counters.processed > 0 for w in replicas)
    assert sum(w.counters.processed for w in replicas) == 200
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("tagged", "r") as c:
        assert c.stream_info("default").finished


def test_a_failing_source_records_the_error_and_stops(tmp_path, sample_catalog):
    from asapo_pipelines.worker.runtime import UnitFailed

    store = tmp_path / "store"
    source = make(
        store,
        sample_catalog,
        "test.numbers",
        "numbers",
        {"count": 10, "fail_after": 4},
        outputs={"numbers": "numbers"},
    )
    with pytest.raises(
        UnitFailed,
        match=r"^source numbers \(test.numbers\) failed: OSError: "
        r"detector connection lost; the traceback is on the error stream$",
    ):
        source.run()
    assert [decode(m.payload, m.metadata)["n"] for m in read_all(store, "numbers")] == [1, 2, 3, 4]
    (record,) = [decode(m.payload, m.metadata) for m in read_all(store, "demo.errors", "numbers")]
    assert record["hook"] == "run"
    assert "OSError: detector connection lost" in record["traceback"]
    # not finished: a restarted source goes on where it stopped, without sending 1..4 again
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("numbers", "r") as c:
        assert not c.stream_info("default").finished
    again = make(
        store,
        sample_catalog,
        "test.numbers",
        "numbers",
        {"count": 10},
        outputs={"numbers": "numbers"},
    )
    assert again.run() == "finished"
    assert [decode(m.payload, m.metadata)["n"] for m in read_all(store, "numbers")] == list(
        range(1, 11)
    )
    assert again.counters.duplicates_skipped == 4


@pytest.mark.parametrize("fail_at_end", [False, True])
def test_per_scan_results_and_stream_hook_errors(tmp_path, sample_catalog, fail_at_end):
    store = tmp_path / "store"
    source = make(
        store,
        sample_catalog,
        "test.numbers",
        "numbers",
        {"count": 9, "scan_size": 3},
        outputs={"numbers": "numbers"},
    )
    assert source.run() == "finished"
    total = make(
        store,
        sample_catalog,
        "test.total",
        "total",
        {"fail_at_end": fail_at_end},
        {"numbers": "numbers"},
        {"totals": "totals"},
    )
    assert total.run() == "finished"
    streams = ["default", "scan-2", "scan-3"]
    if fail_at_end:
        errors = [decode(m.payload, m.metadata) for m in read_all(store, "demo.errors", "total")]
        assert [(e["hook"], e["error"]) for e in errors] == [
            ("on_stream_end", f"cannot total {s}") for s in streams
        ]
        assert total.counters.errors == 3
    else:
        got = [decode(m.payload, m.metadata) for s in streams for m in read_all(store, "totals", s)]
        assert got == [
            {"scan": "default", "total": 6},
            {"scan": "scan-2", "total": 15},
            {"scan": "scan-3", "total": 24},
        ]


def test_a_sink_that_cannot_flush_stops_without_acknowledging(tmp_path, sample_catalog):
    from asapo_pipelines.sdk.runner import UnitFlushError

    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, 4):
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")
    sink = make(store, sample_catalog, "test.full-disk", "sink", {}, {"numbers": "numbers"})
    with pytest.raises(
        UnitFlushError,
        match=r"^unit test.full-disk could not make its output "
        r"durable: OSError: \[Errno 28\] No space left on device; its "
        r"unacknowledged inputs will be delivered again$",
    ):
        sink.run()
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("numbers", "r") as c:
        assert c.stream_info("default").group_lag["demo_sink"] == 3
    assert read_all(store, "demo.status", "sink.0")[-1].metadata["state"] == "failed"


def test_status_says_loading_until_the_unit_is_ready(tmp_path, sample_catalog):
    import sample_units

    store = tmp_path / "store"
    sample_units.GATE.clear()
    # a unit that takes its time to get ready, as an XAS unit importing larch does
    descriptor = sample_catalog.get("core.identity").model_copy(
        update={"runtime": "sample_units:Gated"}
    )
    worker = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        descriptor,
        {},
        pipeline="demo",
        instance="gated",
        inputs={"input": "in"},
        outputs={"output": "out"},
        status_interval=30.0,  # records come from the changes of state, not the interval
        linger=0.0,
    )
    thread, result = start(worker)

    def states() -> list[str]:
        try:
            return [m.metadata["state"] for m in read_all(store, status_source("demo"), "gated.0")]
        except Exception:  # not published yet
            return []

    try:
        assert wait_for(lambda: "loading" in states())
        assert "running" not in states()
    finally:
        sample_units.GATE.set()
    assert wait_for(lambda: "running" in states())
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("in") as p:
        p.send("default", b"x", {"format": "bytes"})
        p.finish_stream("default")
    thread.join(30)
    assert result == {"state": "finished"}
    assert states()[0] == "loading"
    assert states()[-2:] == ["running", "finished"]


def idle_copy(store: Path, sample_catalog, linger: float = 60.0) -> Worker:
    """An identity worker that would look at its input once a minute if nothing woke it."""
    return make(
        store,
        sample_catalog,
        "core.identity",
        "copy",
        inputs={"input": "in"},
        outputs={"output": "out"},
        poll=60.0,
        refresh=60.0,
        linger=linger,
    )


def test_an_idle_worker_wakes_when_its_input_gets_data(tmp_path, sample_catalog):
    store = tmp_path / "store"
    # it would sleep 60 s between looks if nothing woke it: the store's change does
    worker = idle_copy(store, sample_catalog, linger=0.0)
    thread, result = start(worker)
    assert wait_for(lambda: worker.counters.state == "running")
    time.sleep(0.3)  # idle now, waiting
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("in") as p:
        p.send("default", b"late", {"format": "bytes"})
    assert wait_for(lambda: worker.counters.processed == 1, timeout=20)
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("in") as p:
        p.finish_stream("default")
    thread.join(20)
    assert result == {"state": "finished"}
    assert [bytes(m.payload) for m in read_all(store, "out")] == [b"late"]


def test_an_idle_worker_stops_at_once_when_told(tmp_path, sample_catalog):
    worker = idle_copy(tmp_path / "store", sample_catalog)
    thread, result = start(worker)
    assert wait_for(lambda: worker.counters.state == "running")
    time.sleep(0.5)  # idle now, in its wait
    worker.stop()
    thread.join(worker.refresh / 2)  # its own next look is a minute away: stop() woke it
    assert not thread.is_alive()
    assert result == {"state": "stopped"}


def test_a_worker_whose_streams_ended_does_not_spin_on_others_commits(
    tmp_path, sample_catalog, monkeypatch
):
    """Its input's only stream has ended; it lingers, while another process keeps committing to
    the same data source. Those commits make the store's wake fd readable, and only get_next,
    which is not called for ended streams between refreshes, would clear it: the worker would
    wake at once, thousands of times a second, until its next refresh."""
    import asapo_pipelines.worker.runtime as runtime

    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("in") as p:
        p.send("default", b"one", {"format": "bytes"})
        p.finish_stream("default")
    worker = idle_copy(store, sample_catalog)
    waits: list[float] = []
    real_select = runtime.select.select

    class CountingSelect:
        @staticmethod
        def select(*args):
            if threading.current_thread() is thread:
                waits.append(time.monotonic())
            return real_select(*args)

    monkeypatch.setattr(runtime, "select", CountingSelect)
    thread, result = start(worker)
    assert wait_for(lambda: worker.counters.processed == 1)

    def idle() -> bool:
        """No new wait for 0.3 s: the stream seen drained and ended, the worker lingering (a
        fixed sleep could end before a late worker thread's last short wait)."""
        before = len(waits)
        time.sleep(0.3)
        return len(waits) == before

    assert wait_for(idle)
    began = time.monotonic()
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("in") as p:
        for i in range(20):  # a second of another unit's commits to the same data source
            p.send("other", b"x", {"format": "bytes", "i": i})
            time.sleep(0.05)
    during = [w for w in waits if w >= began]
    worker.stop()
    thread.join(worker.refresh / 2)
    assert not thread.is_alive()
    assert result == {"state": "stopped"}
    # one wait until the next refresh (a minute away), not one per wake-up
    assert len(during) <= 1, f"{len(during)} waits in a second"


def test_an_idle_worker_stops_at_once_on_sigterm(tmp_path, sample_catalog):
    """SIGTERM arrives while the worker waits in select(): the handler runs, then select()
    would resume its wait (PEP 475) if the handler did not also wake it."""
    worker = idle_copy(tmp_path / "store", sample_catalog)
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker.install_signal_handlers()
    sent: list[float] = []

    def terminate() -> None:
        wait_for(lambda: worker.counters.state == "running")
        time.sleep(0.5)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        state = worker.run()  # in the main thread, where Python runs signal handlers
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    killer.join(5)
    assert state == "stopped"
    assert sent
    # its own next look was a minute away: the signal woke it
    assert time.monotonic() - sent[0] < worker.refresh / 2


def test_a_worker_restarted_within_its_session_counts_on_from_the_one_before(
    tmp_path, sample_catalog
):
    # `pipeline status`, the viewer and the run's counts read each replica's last status
    # record: a process killed and restarted by its executor must not drop what it had done
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in range(1, 7):
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")

    class KilledBeforeAck(Worker):
        def _acknowledge(self, port, stream, ids):
            if 4 in ids:
                assert self.status is not None
                self.status.stop("running")  # its last periodic record, then it dies
                raise Crash("killed between writing the outputs and acknowledging")
            super()._acknowledge(port, stream, ids)

    def worker(session: dict, **kw) -> Worker:
        return make(
            store,
            sample_catalog,
            "test.tag",
            "tag",
            {},
            {"numbers": "numbers"},
            {"tagged": "tagged"},
            lease_seconds=0.5,
            ack_batch=1,
            run={"run": "r1", "fingerprint": "f", **session},
            **kw,
        )

    first = worker({"started": 1000.0}, cls=KilledBeforeAck)
    with pytest.raises(Crash):
        first.run()
    # 1-3 acknowledged; 4 written but not acknowledged: counted by whoever acknowledges it
    assert first.counters.processed == 3
    second = worker({"started": 1000.0})
    thread, result = start(second)
    thread.join(60)
    assert result == {"state": "finished"}
    # 4 (handed out again), 5 and 6 on top of the 3 its predecessor had published
    assert (second.counters.processed, second.counters.redelivered) == (3 + 3, 1)
    assert second.counters.outputs == 4 + 2
    assert second.counters.duplicates_skipped == 1
    # a new session (a resume) starts from zero: the run adds the sessions' counts itself
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        p.send("more", json.dumps({"n": 7}).encode(), {"format": "json"})
        p.finish_stream("more")
    third = worker({"started": 1000.0, "resumed_at": 2000.0})
    thread, result = start(third)
    thread.join(60)
    assert result == {"state": "finished"}
    assert third.counters.processed == 1
