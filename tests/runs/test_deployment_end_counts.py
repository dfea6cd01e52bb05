"""The end of a stopped deployment's run counts each worker's final status record, not one
published before its last batch. `pipeline stop` cancels the jobs (the workers get SIGTERM,
finish their batch, acknowledge it and publish their final counts) and ends the run: read at
once, the counts missed that batch (an outside tester's Slurm run said 29 merges for the 30 in
the NeXus file). Here a worker's records are published on a real embedded store as a stopped
worker publishes them, its final one a second after the end was asked for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from asapo_pipelines.cli.deployments import begin, end
from asapo_pipelines.runs import RunStore
from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.naming import status_source, status_stream
from asapo_pipelines.worker.status import Counters, session_label

from helpers import core_pipeline


def _publish(store: Path, pipeline: str, counters: Counters) -> None:
    with (
        open_transport({"embedded": {"path": str(store)}}) as transport,
        transport.producer(status_source(pipeline)) as producer,
    ):
        stream = status_stream(counters.instance, counters.replica)
        producer.send(stream, None, counters.snapshot(0.0))


def test_a_stopped_deployments_run_counts_the_final_records(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    store = tmp_path / "store"
    file = core_pipeline(tmp_path, files=files, out=tmp_path / "out.jsonl", store=str(store))
    began = begin(str(file), "slurm")
    assert began is not None
    assert began.session is not None
    label = session_label(began.run_id, began.session)
    sink = Counters(unit="core.jsonl-sink", instance="sink", session=label, state="running")
    sink.processed = 29
    _publish(store, "faults", sink)

    def last_batch() -> None:  # what SIGTERM makes the worker do: its batch, then the end
        time.sleep(1.0)
        sink.processed, sink.state = 30, "stopped"
        _publish(store, "faults", sink)

    worker = threading.Thread(target=last_batch)
    worker.start()
    try:
        assert end(str(file), "slurm", "stopped", "stopped by a test", stopped=True)
    finally:
        worker.join()
    with open_transport({"embedded": {"path": str(store)}}) as transport:
        (run,) = RunStore(transport, "faults").runs()
    assert run.state == "stopped"
    assert run.counts["sink"]["processed"] == 30
