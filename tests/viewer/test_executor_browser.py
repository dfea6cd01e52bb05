"""The viewer beside the local executor: a worker killed on purpose is restarted by the
executor's restart policy, and the page shows it restarting, then counts the restart."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import pytest
from conftest import ARTIFACTS
from test_browser import unit_row, wait_for

NS = 1_000_000_000


def job_for(pipeline: Any) -> dict[str, Any]:
    """The Nomad job a compiled pipeline is: a task group per unit running `pipeline worker`."""
    groups = []
    for unit in pipeline.view.units:
        groups.append({
            "Name": unit.instance,
            "Count": 1,
            "RestartPolicy": {"Attempts": 3, "Interval": 600 * NS, "Delay": 3 * NS,
                              "Mode": "fail"},
            "Tasks": [{
                "Name": "worker",
                "Driver": "raw_exec",
                "Config": {"command": sys.executable, "args": [
                    "-m", "asapo_pipelines", "worker", str(pipeline.file), unit.instance,
                    "--status-interval", "0.3", "--lease-seconds", "2"]},
                "Env": {"PYTHONPATH": pipeline.env["PYTHONPATH"]},
                "KillTimeout": 5 * NS,
            }],
        })  # fmt: skip
    return {"Job": {"ID": "live-demo", "Name": "live-demo", "Type": "batch", "TaskGroups": groups}}


def test_a_killed_unit_is_restarting_until_the_executor_brings_it_back(page, live_pipeline):
    executor_module = pytest.importorskip("asapo_pipelines.local.executor")
    pipeline = live_pipeline(count=80, delay=0.25)
    store = pipeline.view.transport["embedded"]["path"]
    run_dir = os.path.join(store, "runs", "live-demo")
    executor = executor_module.LocalExecutor(
        job_for(pipeline),
        run_dir,
        executor_module.ExecOptions(handle_signals=False, pipeline_file=str(pipeline.file)),
    )
    thread = threading.Thread(target=executor.run, daemon=True)
    thread.start()
    try:
        page.goto(pipeline.serve())  # finds the run beside the embedded store by itself
        wait_for(page, lambda: unit_row(page, "average").get("state") == "running", "running")
        wait_for(page, lambda: int(unit_row(page, "average")["processed"]) > 2, "progress")

        from asapo_pipelines.local.state import read_state

        pid = next(
            u["pid"]
            for u in read_state(executor.run_dir / "state.json")["units"]
            if u["group"] == "average"
        )
        os.kill(pid, signal.SIGKILL)
        # the executor waits out its restart delay: the page says so
        wait_for(page, lambda: unit_row(page, "average")["state"] == "restarting", "restarting")
        assert "state-restarting" in page.get_attribute('#graph [data-node="u:average"]', "class")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-executor-restarting.png"), full_page=True)
        wait_for(
            page,
            lambda: (
                unit_row(page, "average")["restarts"] == "1"
                and unit_row(page, "average")["state"] == "running"
            ),
            "average restarted once by the executor",
        )
        assert page.problems == []
    finally:
        executor.request_stop("test over")
        thread.join(timeout=60)
