"""The backlog a worker reports is what its group has not acknowledged. A transport that does
not count acknowledgements per consumer group (ASAP::O's stream info has no such count, nor
need a plugin's) gave the stream's whole message count instead, so `pipeline status` showed
every message of a finished, fully processed run as still to do (an outside author of a
transport plugin: `processed 3 ... backlog 3`). Now the backlog is unknown there, shown "-".
A real identity worker on the embedded store; the second case has its consumers answer
`streams()` as such a transport does, with no per-group counts."""

from __future__ import annotations

import dataclasses

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.counters import _cells
from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.embedded import EmbeddedConsumer
from asapo_pipelines.worker.runtime import Worker

from helpers import run_to_end


def fill(store, count):
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("raw") as p:
        for i in range(count):
            p.send("default", b"x", {"format": "bytes", "i": i})
        p.finish_stream("default")


def run_identity(store):
    w = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        Catalog.load().get("core.identity"),
        {},
        pipeline="demo",
        instance="copy",
        inputs={"input": "raw"},
        outputs={"output": "copied"},
        status_interval=0.2,
        linger=0.1,
        refresh=0.05,
    )
    return run_to_end(w)


def test_a_finished_run_has_no_backlog_where_the_transport_counts_it(tmp_path):
    fill(tmp_path, 3)
    counters = run_identity(tmp_path)
    assert (counters.processed, counters.backlog) == (3, 0)


def test_the_backlog_is_unknown_not_the_message_count_without_per_group_counts(
    tmp_path, monkeypatch
):
    plain = EmbeddedConsumer.streams

    def without_group_counts(self):
        return [dataclasses.replace(info, group_lag={}) for info in plain(self)]

    monkeypatch.setattr(EmbeddedConsumer, "streams", without_group_counts)
    fill(tmp_path, 3)
    counters = run_identity(tmp_path)
    assert counters.processed == 3
    assert counters.backlog is None
    assert _cells(dataclasses.asdict(counters), now=counters.started)["backlog"] == "-"
