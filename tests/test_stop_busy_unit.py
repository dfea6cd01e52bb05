"""A unit whose `process` does not return (a long computation, a call that hangs) keeps its
worker from draining when the run is stopped: after the task's KillTimeout the local executor
kills it, and `pipeline run` showed only `sig9` in its table, leaving the unit's author to
guess why. It now says which task was killed, after how long, and what keeps a worker from
exiting. Real plugin distribution, real `pipeline run` and `pipeline stop` (the KillTimeout is
the compiled job's 30 s, so this test takes that long)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from helpers import PIPELINE, installed_plugin, plugin_env, run_pipeline, wait_for

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp


@hookimpl
def register_units(register):
    register(describe(
        "busy.stuck", kind="connector", summary="Never gets back from its first message.",
        runtime="asapo_busy_units.runtime:Stuck", inputs=[inp("files")],
    ))
"""

RUNTIME = """
import os
import time
from pathlib import Path

from asapo_pipelines.sdk import Sink


class Stuck(Sink):
    def process(self, message):
        Path(os.environ["BUSY_MARK"]).write_text("busy")
        time.sleep(3600)  # ignores self.stopping
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_plugin(
        tmp_path_factory.mktemp("busy"),
        "asapo-busy-units",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"busy": "asapo_busy_units.plugin"},
    )


def test_a_task_killed_after_its_kill_timeout_is_said(tmp_path: Path, site: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    doc = {
        "pipeline": "busy",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "stuck": {"unit": "busy.stuck", "inputs": {"files": "raw"}},
        },
    }
    (tmp_path / "busy.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    mark = tmp_path / "busy.mark"
    env = plugin_env(site, BUSY_MARK=str(mark))
    run = subprocess.Popen(
        [PIPELINE, "run", "busy.pipeline.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(mark.exists, timeout=120, what="the unit to be busy with its message")
        stopped = run_pipeline("stop", "busy.pipeline.yaml", cwd=tmp_path, env=env, timeout=180)
        out, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Traceback" not in out, out
    said = (
        "stuck[0] did not exit within 30s of SIGTERM, so it was killed (SIGKILL): its unit was "
        "still busy (a process() or run() that did not return, or a thread it started that did "
        "not end)"
    )
    assert said in " ".join(out.split()), out
