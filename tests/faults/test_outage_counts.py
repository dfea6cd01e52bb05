"""The counts a run records are what its units processed, also across a transport outage.

Before, a worker that failed while Redis was down could not publish its final status record;
the restarted worker counted on from the record before, and the run recorded files 6898,
identity 7713, sink 7819 processed for 8000 files that all reached the sink."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from faults_support import env, sink_names, wait_for, write_files

from helpers import PIPELINE
from leaked_processes import stop_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None
        or importlib.util.find_spec("asapo_pipelines_redis") is None,
        reason="needs redis-server and plugins/redis",
    ),
]
FILES = 3000


def test_run_counts_survive_a_transport_outage_mid_run(tmp_path: Path) -> None:
    from asapo_pipelines_redis.testing import RedisServer, copy_chain

    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, FILES)
    with RedisServer(tmp_path / "redis") as server:
        file = tmp_path / "outage.pipeline.yaml"
        doc = copy_chain("outage", server.url, files, out, payload_dir="payloads")
        file.write_text(json.dumps(doc, indent=2))  # JSON is YAML
        run = subprocess.Popen(
            [PIPELINE, "run", str(file), "--fresh"],
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: len(sink_names(out)) >= 300, timeout=120, what="the first outputs")
            server.stop()  # the outage, mid-run: every worker meets it
            assert len(sink_names(out)) < FILES, "the run ended before the outage"
            time.sleep(9)
            server.start()  # same port, same append-only file
            _, err = run.communicate(timeout=300)
        finally:
            stop_run(run, file, env=env(), cwd=tmp_path)
        assert run.returncode == 0, err
        names = sink_names(out)
        assert len(names) == FILES
        assert set(names.values()) == {1}

        listed = subprocess.run(
            [PIPELINE, "runs", str(file), "--json"],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert listed.returncode == 0, listed.stderr
    [record] = json.loads(listed.stdout)["runs"]
    restarts = _restarts(tmp_path)
    assert sum(restarts.values()) > 0, "the outage made no worker fail: it tested nothing"
    for unit in ("files", "identity", "sink"):
        processed = record["counts"][unit]["processed"]
        # each failure leaves at most one message in doubt: one taken but not acknowledged is
        # processed again by the next process; one whose send failed after Redis wrote it is
        # found written by the next one and not counted again
        assert abs(processed - FILES) <= restarts[unit], (unit, record["counts"])


def _restarts(directory: Path) -> dict[str, int]:
    """unit -> how often its task was restarted in the run (the supervisor's state file)."""
    [state_file] = (directory / ".pipeline-data" / "runs").glob("*/state.json")
    state = json.loads(state_file.read_text())
    return {u["group"]: int(u["restarts"]) for u in state["units"]}
