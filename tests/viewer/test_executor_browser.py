"""The viewer beside `pipeline run`: a worker killed on purpose is restarted by the local
executor's restart policy, and the page shows it restarting, then counts the restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import unit_row, wait_for
from viewer_support import ARTIFACTS


def pipeline_command(pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(pipeline.env)
    # the compiled tasks run `pipeline worker`: the command of this environment
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "asapo_pipelines", *args, str(pipeline.file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_killed_unit_is_restarting_until_pipeline_run_brings_it_back(page, live_pipeline):
    pytest.importorskip("asapo_pipelines.local.executor")
    pipeline = live_pipeline(count=100, delay=0.25)
    started = pipeline_command(pipeline, "run", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        page.goto(pipeline.serve())  # finds the run beside the embedded store by itself
        wait_for(page, lambda: unit_row(page, "average").get("state") == "running", "running")
        wait_for(page, lambda: int(unit_row(page, "average")["processed"]) > 2, "progress")

        store = Path(pipeline.view.transport["embedded"]["path"])

        def pid_of_average() -> int | None:
            # the executor writes its state file on its own beat: the page can be ahead of it
            state = json.loads((store / "runs" / "live-demo" / "state.json").read_text())
            return next(u["pid"] for u in state["units"] if u["group"] == "average")

        wait_for(page, lambda: pid_of_average() is not None, "the executor's record of its pid")
        pid = pid_of_average()
        assert pid is not None
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
        stopped = pipeline_command(pipeline, "stop")
        assert stopped.returncode == 0, stopped.stderr
