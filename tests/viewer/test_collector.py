"""What the viewer reads from a real embedded store: states, restarts, lag, plots, messages."""

from __future__ import annotations

import time

import live_units
import pytest
from pydantic import ValidationError

from asapo_pipelines.descriptor import PlotHint, Port, UnitDescriptor
from asapo_pipelines.transport import NoData, StreamInfo, formats
from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.collector import Collector
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.naming import group_name, status_source, status_stream


@pytest.fixture
def store(tmp_path):
    with EmbeddedTransport(tmp_path / "store") as transport:
        yield transport


def view_of(transport: EmbeddedTransport) -> PipelineView:
    return PipelineView(
        name="demo",
        transport={"embedded": {"path": str(transport.root)}},
        units=(
            UnitView("waves", live_units.WAVES, outputs={"waves": "waves"}),
            UnitView(
                "average", live_units.AVERAGE, inputs={"waves": "waves"}, outputs={"mean": "means"}
            ),
            UnitView(
                "judge",
                live_units.JUDGE,
                inputs={"mean": "means"},
                outputs={"decisions": "decisions"},
            ),
        ),
    )


def status(producer, instance, *, pid, t, state="running", processed=0, replica=0, **more):
    producer.send(
        status_stream(instance, replica),
        None,
        more
        | {
            "unit": "x.y",
            "instance": instance,
            "replica": replica,
            "state": state,
            "processed": processed,
            "errors": 0,
            "rate": 2.0,
            "backlog": 1,
            "lag_seconds": 0.5,
            "time": t,
            "pid": pid,
            "host": "node",
            "started": pid * 10.0,
        },
    )


def test_states_and_restarts_come_from_the_status_stream(store):
    now = time.time()
    with store.producer(status_source("demo")) as p:
        # average: a first process, killed, then a second one running now
        status(p, "average", pid=1, t=now - 9, processed=5)
        status(p, "average", pid=1, t=now - 8.5, processed=6)
        status(p, "average", pid=2, t=now - 0.2, processed=7)
        # judge: silent for long without a final state (killed), two replicas for waves
        status(p, "judge", pid=3, t=now - 20)
        status(p, "judge", pid=3, t=now - 19.5)
        status(p, "waves", pid=4, t=now - 3, state="finished", processed=10)
        status(p, "waves", pid=5, t=now - 0.1, processed=4, replica=1)
    units = Collector(view_of(store), store).poll()["units"]
    assert units["average"]["restarts"] == 1
    assert units["average"]["state"] == "running"
    assert units["average"]["processed"] == 6 + 7  # outside a run each process counts from 0
    assert units["judge"]["state"] == "restarting"
    assert units["judge"]["rate"] == 0  # a dead process adds no rate
    assert units["waves"]["replicas"] == 2
    assert units["waves"]["processed"] == 14
    assert units["waves"]["state"] == "running"  # one replica done, the other still at work


def test_a_replica_loading_shows_until_every_replica_runs(store):
    """A worker's records say `loading` while it imports its unit's runtime or restores its
    state: a unit with one replica still loading is not yet all at work, and says so; a state
    this viewer does not know (a newer worker's) is shown rather than failing the section."""
    now = time.time()
    with store.producer(status_source("demo")) as p:
        status(p, "waves", pid=4, t=now - 0.1, processed=4)
        status(p, "waves", pid=5, t=now - 0.1, state="loading", replica=1)
        status(p, "average", pid=6, t=now - 0.1, state="loading")
        status(p, "judge", pid=7, t=now - 0.1, state="pondering")
    units = Collector(view_of(store), store).poll()["units"]
    assert units["waves"]["state"] == "loading"
    assert units["waves"]["rate"] == 4.0  # both replicas at work: the loading one adds its 2.0
    assert units["average"]["state"] == "loading"
    assert units["judge"]["state"] == "pondering"


def test_the_busy_text_is_of_a_replica_in_the_state_the_unit_shows(store):
    """The page colours a unit's busy text by the unit's state: a replica busy in process()
    beside one loading read `busy 40s (waves/default#3)` in loading's colour. The busy text
    is now that of a replica in the unit's state, or none."""
    now = time.time()
    busy = {"busy_seconds": 40.0, "busy_with": "waves/default#3"}
    with store.producer(status_source("demo")) as p:
        # average: one replica busy in process(), the other loading (not in a long call)
        status(p, "average", pid=1, t=now - 0.1, **busy)
        status(p, "average", pid=2, t=now - 0.1, state="loading", replica=1)
        # judge: the same, but the loading one hangs in the import of its runtime
        status(p, "judge", pid=3, t=now - 0.1, **busy)
        status(
            p,
            "judge",
            pid=4,
            t=now - 0.1,
            state="loading",
            replica=1,
            busy_seconds=12.0,
            busy_with="importing the unit's runtime",
        )
    units = Collector(view_of(store), store).poll()["units"]
    average, judge = units["average"], units["judge"]
    assert (average["state"], average["busy_seconds"], average["busy_with"]) == (
        "loading",
        None,
        None,
    ), average
    assert (judge["state"], judge["busy_seconds"], judge["busy_with"]) == (
        "loading",
        12.0,
        "importing the unit's runtime",
    ), judge
    # and what each replica does, so that the one busy in process() is not hidden
    assert average["replica_states"] == [
        {"state": "loading", "replicas": 1, "busy_seconds": None, "busy_with": None},
        {"state": "running", "replicas": 1, **busy},
    ], average
    assert [p["busy_with"] for p in judge["replica_states"]] == [
        "importing the unit's runtime",
        "waves/default#3",
    ], judge


def test_replicas_in_different_states_are_counted_per_state_the_busy_ones_each(store):
    """Replicas busy in a long call are each told apart, the longest first, the others counted
    per state; replicas all in one state need no telling apart."""
    now = time.time()
    with store.producer(status_source("demo")) as p:
        status(p, "waves", pid=1, t=now - 0.1, busy_seconds=5.0, busy_with="waves/default#1")
        status(p, "waves", pid=2, t=now - 0.1, replica=1)
        status(p, "waves", pid=3, t=now - 0.1, replica=2, busy_seconds=9.0, busy_with="b#2")
        status(p, "waves", pid=4, t=now - 0.1, replica=3)
        status(p, "waves", pid=5, t=now - 0.1, replica=4, state="loading")
        status(p, "average", pid=6, t=now - 0.1, busy_seconds=5.0, busy_with="waves/default#1")
        status(p, "average", pid=7, t=now - 0.1, replica=1)
    units = Collector(view_of(store), store).poll()["units"]
    assert [
        (p["state"], p["replicas"], p["busy_with"]) for p in units["waves"]["replica_states"]
    ] == [
        ("loading", 1, None),
        ("running", 1, "b#2"),
        ("running", 1, "waves/default#1"),
        ("running", 2, None),
    ]
    assert units["average"]["replica_states"] == []
    assert units["average"]["busy_with"] == "waves/default#1"


def test_final_states_and_units_not_started(store):
    with store.producer(status_source("demo")) as p:
        status(p, "waves", pid=4, t=time.time() - 60, state="finished", processed=10)
        status(p, "average", pid=5, t=time.time() - 60, state="failed")
    units = Collector(view_of(store), store).poll()["units"]
    assert units["waves"]["state"] == "finished"
    assert units["average"]["state"] == "failed"
    assert units["judge"]["state"] == "waiting"


def test_streams_show_lag_per_unit_and_the_viewer_takes_nothing(store):
    with store.producer("waves") as p:
        for i in range(5):
            payload, meta = formats.encode({"x": [0, 1], "y": [i, i]}, "json")
            p.send("default", payload, meta)
    group = group_name("demo", "average")
    with store.consumer("waves", group) as c:
        c.acknowledge("default", c.get_next("default").id)
    collector = Collector(view_of(store), store)
    for _ in range(3):
        sections = collector.poll()
    waves = next(s for s in sections["streams"] if s["name"] == "waves")
    assert waves["messages"] == 5
    assert waves["bytes"] > 0
    assert waves["lag"] == {"average": 4}
    # every message is still there for the unit's group after the viewer read them all
    with store.consumer("waves", group) as c:
        ids = []
        while True:
            try:
                ids.append(c.get_next("default").id)
            except NoData:
                break
    assert sorted(ids) == [2, 3, 4, 5]
    latest = collector.latest("waves", 2)
    assert [m["id"] for m in latest] == [5, 4]
    with pytest.raises(KeyError):
        collector.latest("not-a-stream-of-this-pipeline")


def test_plots_follow_the_hints_over_scans(store):
    with store.producer("means") as p:
        for scan in ("scan-1", "scan-2"):
            for n in (1, 2):
                payload, meta = formats.encode(
                    {
                        "x": [0, 1, 2],
                        "mean": [n, n, n],
                        "n": n,
                        "noise": 1 / n,
                        "label": f"mean {scan} {n}",
                    },
                    "json",
                )
                p.send(scan, payload, meta)
    plots = {p["id"]: p for p in Collector(view_of(store), store).poll()["plots"]}
    merged = next(s for s in plots["curves"]["series"] if s["unit"] == "average")
    assert len(merged["items"]) == 1  # keep=1: only the newest mean is overlaid
    assert merged["items"][0]["name"] == "mean scan-2 2"
    noise = plots["average-1"]["series"][0]["items"]
    assert [(i["x"], i["y"]) for i in noise] == [(1, 1.0), (2, 0.5), (1, 1.0), (2, 0.5)]


def test_plot_hint_must_name_a_declared_output():
    with pytest.raises(ValidationError, match="undeclared output port"):
        UnitDescriptor(
            name="x.y",
            kind="connector",
            summary="s",
            runtime="m:C",
            outputs=(Port(name="out"),),
            plots=(PlotHint(port="other", kind="xy", y="y"),),
        )
    with pytest.raises(ValidationError):
        PlotHint(port="out", kind="xy", y="not a path!")
    plain = UnitDescriptor(
        name="x.y", kind="connector", summary="s", runtime="m:C", outputs=(Port(name="out"),)
    )
    assert plain.plots == ()


def test_plot_fields_read_the_payload_then_the_metadata():
    from asapo_pipelines.transport import Message
    from asapo_pipelines.viewer.collector import get_field

    msg = Message("s", "default", 7, None, {"scan_name": "scan 7", "file": "meta.xdi"}, 1, 5.0)
    payload = {"metadata": {"file": "payload.xdi"}, "arrays": {"energy": [1, 2]}}
    assert get_field(msg, payload, "arrays.energy") == [1, 2]
    assert get_field(msg, payload, "metadata.file") == "payload.xdi"  # the payload's own
    assert get_field(msg, payload, "metadata.scan_name") == "scan 7"  # the message's
    assert get_field(msg, payload, "scan_name") == "scan 7"
    assert get_field(msg, payload, "arrays.missing") is None
    assert (get_field(msg, payload, "id"), get_field(msg, payload, "time")) == (7, 5.0)


class CountlessTransport:
    """The embedded store seen through only what the ASAP::O backend tells: stream lists with
    last ids and times, no message counts, sizes or group lags (contract of `StreamInfo`)."""

    def __init__(self, inner: EmbeddedTransport) -> None:
        self.inner = inner

    def data_sources(self) -> list[str]:
        return self.inner.data_sources()

    def consumer(self, source: str, group: str, **kwargs):
        consumer = self.inner.consumer(source, group, **kwargs)
        plain = consumer.streams

        def streams():
            return [
                StreamInfo(i.name, i.last_id, i.finished, i.next_stream, i.created,
                           i.last_timestamp)
                for i in plain()
            ]  # fmt: skip

        consumer.streams = streams
        return consumer


def test_contract_streams_without_counts_sizes_or_lags(store):
    with store.producer("waves") as p:
        for i in range(3):
            payload, meta = formats.encode({"x": [0, 1], "y": [i, i]}, "json")
            p.send("default", payload, meta)
    sections = Collector(view_of(store), CountlessTransport(store)).poll()
    waves = next(s for s in sections["streams"] if s["name"] == "waves")
    assert waves["messages"] == 3  # from the last id
    assert waves["bytes"] is None  # unknown, not zero
    assert waves["lag"] == {}
    plots = {p["id"]: p for p in sections["plots"]}
    assert len(plots["curves"]["series"][0]["items"]) == 3
