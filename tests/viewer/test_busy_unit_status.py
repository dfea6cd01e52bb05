"""A unit whose `process()` takes long (a fit, a model's inference, a call that hangs) showed in
`pipeline status` as `running, processed 0, rate 0.0/s` for the whole call: an idle unit and a
stuck one read the same. Its worker's status records now say how long the unit has been in its
call and with which message, and the local executor's table, `status --json` and the viewer show
it. Real plugin distribution, real `pipeline run`, `status`, `view` and `stop` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from viewer_support import read_events, start_view, stop_view

from helpers import PIPELINE, installed_plugin, run_pipeline, wait_for

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp


@hookimpl
def register_units(register):
    register(describe(
        "slow.fit", kind="connector", summary="Works long on each message.",
        runtime="asapo_slow_units.runtime:SlowFit", inputs=[inp("files")],
    ))
"""

# about 8 s of work per message, longer until the test has looked (a loaded machine may take
# seconds per `pipeline status`; the log's line comes after a minute), at most five minutes
RUNTIME = """
import os
import time
from pathlib import Path

from asapo_pipelines.sdk import Sink


class SlowFit(Sink):
    def process(self, message):
        Path(os.environ["SLOW_MARK"]).write_text("busy")
        began = time.monotonic()
        release = Path(os.environ["SLOW_RELEASE"])
        while time.monotonic() - began < 300:
            if time.monotonic() - began >= 8 and release.exists():
                break
            time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_plugin(
        tmp_path_factory.mktemp("slow"),
        "asapo-slow-units",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"slow": "asapo_slow_units.plugin"},
    )


def _fit_counters(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    status = run_pipeline("status", "slow.pipeline.yaml", "--json", cwd=folder, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    units = json.loads(status.stdout)["units"]
    return next(u["counters"] for u in units if u["group"] == "fit")


#: what the worker's log says, once, of a call that has lasted a minute
LONG_CALL = ": the unit has been busy for over 60 s with "


def _fit_log(folder: Path, env: dict[str, str]) -> str:
    logs = run_pipeline("logs", "slow.pipeline.yaml", "fit", cwd=folder, env=env)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    return logs.stdout


def test_a_unit_long_in_its_call_shows_as_busy(tmp_path: Path, site: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    doc = {
        "pipeline": "slow",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "fit": {"unit": "slow.fit", "inputs": {"files": "raw"}},
        },
    }
    (tmp_path / "slow.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    mark, release = tmp_path / "slow.mark", tmp_path / "slow.release"
    env = {"PYTHONPATH": str(site), "SLOW_MARK": str(mark), "SLOW_RELEASE": str(release)}
    run = subprocess.Popen(
        [PIPELINE, "run", "slow.pipeline.yaml"],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")},
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(mark.exists, timeout=120, what="the unit to be working on its message")
        busy = wait_for(
            lambda: (c := _fit_counters(tmp_path, env)).get("busy_seconds") and c,
            timeout=60,
            what="a status record that says the unit is busy",
        )
        table = run_pipeline("status", "slow.pipeline.yaml", cwd=tmp_path, env=env)
        view, url = start_view(tmp_path / "slow.pipeline.yaml", {**os.environ, **env})
        try:
            viewed = read_events(url, seconds=4.0)["units"]["fit"]
        finally:
            stop_view(view)
        # past a minute in one call, the worker's log says it once (`pipeline logs`)
        said = wait_for(
            lambda: LONG_CALL in (log := _fit_log(tmp_path, env)) and log,
            timeout=180,
            what="the worker's log to say the unit is busy",
        )
        release.write_text("done")
        # the call ended: the records say so, and the message is counted
        after = wait_for(
            lambda: (c := _fit_counters(tmp_path, env)).get("processed") == 1 and c,
            timeout=60,
            what="the message to be processed",
        )
        stopped = run_pipeline("stop", "slow.pipeline.yaml", cwd=tmp_path, env=env, timeout=180)
        out, _ = run.communicate(timeout=180)
    finally:
        release.write_text("done")
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert busy["state"] == "running", busy
    assert busy["processed"] == 0, busy
    assert busy["busy_seconds"] >= 3, busy
    # the message it works on: its input port, stream and id
    port, _, rest = busy["busy_with"].partition("/")
    assert port == "files", busy
    assert rest.endswith("#1"), busy
    assert table.returncode == 0, table.stdout + table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("│ fit"))
    assert "busy " in row, table.stdout
    assert f"({busy['busy_with']})" in row, table.stdout
    assert viewed["state"] == "running", viewed
    assert viewed["busy_seconds"] >= busy["busy_seconds"], viewed
    assert viewed["busy_with"] == busy["busy_with"], viewed
    assert f"{LONG_CALL}{busy['busy_with']} (still in its call;" in said, said
    assert said.count(LONG_CALL) == 1, said
    assert after["busy_seconds"] is None, after
    assert after["busy_with"] is None, after
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Traceback" not in out, out
