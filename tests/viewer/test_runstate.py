"""The local executor's state file tells the viewer about restarts and waiting restarts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import live_units

from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.collector import Collector
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.naming import status_source, status_stream


def record(group: str, state: str, restarts: int, *, index: int = 0, **extra) -> dict:
    # the fields of the local executor's TaskRun.record()
    return {
        "unit": f"{group}[{index}]", "group": group, "index": index, "task": "worker",
        "alloc_id": "0", "lifecycle": "main", "sidecar": False, "state": state, "pid": 1,
        "restarts": restarts, "exit_codes": [], "message": "", "started": time.time(),
        "logs": "", **extra,
    }  # fmt: skip


def write_run(base: Path, pipeline_file: Path, units: list[dict], updated: float) -> Path:
    from asapo_pipelines.local.state import write_state

    run = base / "runs" / "live-demo"
    run.mkdir(parents=True, exist_ok=True)
    write_state(run / "state.json", {
        "job": "live-demo", "name": "live-demo", "status": "running",
        "pipeline_file": str(pipeline_file), "updated": updated, "units": units,
    })  # fmt: skip
    return run


@contextlib.contextmanager
def supervised(run: Path) -> Iterator[None]:
    """The run's supervisor lock held, as a live supervisor holds it: without it the run is
    lost (`local.control.run_status`), as `pipeline status` would say."""
    from asapo_pipelines.local.layout import LOCK_FILE

    fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def make_view(tmp_path: Path) -> PipelineView:
    store = tmp_path / "project" / ".pipeline-data"
    return PipelineView(
        name="live-demo",
        transport={"embedded": {"path": str(store)}},
        units=(
            UnitView("waves", live_units.WAVES, outputs={"waves": "waves"}),
            UnitView(
                "average", live_units.AVERAGE, inputs={"waves": "waves"}, outputs={"mean": "means"}
            ),
        ),
        path=tmp_path / "project" / "live.pipeline.yaml",
    )


def test_the_executor_state_file_gives_restarts_and_waiting_restarts(tmp_path):
    view = make_view(tmp_path)
    store = Path(view.transport["embedded"]["path"])
    with EmbeddedTransport(store) as transport:
        with transport.producer(status_source("live-demo")) as p:
            status = {"state": "running", "time": time.time(), "pid": 9, "started": 1.0}
            p.send(status_stream("average", 0), None, status)
            p.send(status_stream("waves", 0), None, status)
        # a run of another pipeline file in the same place is not ours
        write_run(store.parent / "other", tmp_path / "other.pipeline.yaml",
                  [record("average", "failed", 7)], updated=time.time() + 100)  # fmt: skip
        run = write_run(store, view.path, [record("average", "restarting", 2),
                                           record("waves", "running", 0),
                                           record("average", "complete", 0, lifecycle="prestart")],
                        updated=time.time())  # fmt: skip
        with supervised(run):
            units = Collector(view, transport).poll()["units"]
    # the worker's last status still says running, but the executor is waiting to restart it
    assert units["average"]["state"] == "restarting"
    assert units["average"]["restarts"] == 2
    assert units["waves"]["state"] == "running"
    assert units["waves"]["restarts"] == 0


def test_an_explicit_run_directory_and_a_unit_failed_for_good(tmp_path):
    view = make_view(tmp_path)
    run = write_run(tmp_path / "elsewhere", view.path, [record("waves", "failed", 3)],
                    updated=time.time())  # fmt: skip
    with EmbeddedTransport(view.transport["embedded"]["path"]) as transport, supervised(run):
        found = Collector(view, transport).poll()["units"]  # not beside the pipeline
        given = Collector(view, transport, run_dir=run).poll()["units"]
    assert found["waves"]["state"] == "waiting"
    assert given["waves"]["state"] == "failed"
    assert given["waves"]["restarts"] == 3
