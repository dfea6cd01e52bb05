"""Two pipeline files of one `pipeline:` name on one ASAP::O beamtime, started at the same
moment from one folder: both take the run directory `.pipeline-data/runs/<job>` beside them
(neither's run is recorded there yet to set them apart). The refused one was told to
`pipeline stop` its own file, which went to the Nomad its `deploy:` section names, while the
run holding the name was the other file's local one; it is now told the other file. The test
process holds the start as the winner's `pipeline run` does (its `StartLock`); the refused
start is a real `pipeline run` on the project's loopback ASAP::O (the real asapo wheels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import LoopbackAsapo

from helpers import CACHE_DIR

pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")

TOKEN = "two-files-Tok3n"
PIPELINE = Path(sys.executable).with_name("pipeline")


def _write(path: Path, service: LoopbackAsapo, *, nomad: bool) -> Path:
    doc: dict = {
        "pipeline": "twin",
        "transport": {
            "asapo": {
                "endpoint": service.endpoint,
                "beamtime": service.beamtime,
                "token_env": "TWIN_TOKEN",
                "request_timeout": 5,
            }
        },
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "data", "watch": True},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": f"results/{path.name}.jsonl"},
                "inputs": {"messages": "raw"},
            },
        },
    }
    if nomad:
        doc["deploy"] = {"nomad": {"datacenters": ["*"], "driver": "raw_exec"}}
    path.write_text(json.dumps(doc, indent=1))
    return path


def test_the_refused_start_is_told_to_stop_the_file_whose_run_holds_the_name(
    tmp_path: Path,
) -> None:
    from asapo_pipelines.local.control import StartLock
    from asapo_pipelines.local.target import resolve

    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, TWIN_TOKEN=TOKEN, COLUMNS="200")
    env["NOMAD_ADDR"] = "http://127.0.0.1:9"  # nothing of Nomad is asked
    with LoopbackAsapo(TOKEN) as service:
        winner = _write(tmp_path / "b.pipeline.yaml", service, nomad=False)
        loser = _write(tmp_path / "a.pipeline.yaml", service, nomad=True)
        run_dir = resolve(str(winner), None, None).run_dir
        assert resolve(str(loser), None, None).run_dir == run_dir
        start = StartLock("twin", run_dir, str(winner), str(winner))
        try:
            refused = subprocess.run(
                [str(PIPELINE), "run", str(loser), "--detach"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            start.release()
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"error: job twin is already running locally from {winner} (it is being started: "
        f"its supervisor pid is not known yet); stop it first with `pipeline stop {winner}`\n"
    ), refused.stderr
