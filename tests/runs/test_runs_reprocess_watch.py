"""`pipeline reprocess` of a pipeline whose source watches a folder (a service). A replay beside
the live run was recorded as run r2, its messages copied, and only then refused by the
supervisor lock: r2 stayed `running` for ever. Once the run was stopped, the replay never
ended: its workers, told they were a service's, waited for the open stream the stopped source
had left. Real `pipeline` commands, core units, the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from runs_helpers import one_sentence, store_contents

from helpers import run_pipeline, wait_for

FILE = "w.pipeline.yaml"
WATCHED = """\
pipeline: w
units:
  files: {unit: core.files, params: {directory: in/, watch: true, settle_seconds: 0.2}, outputs: {files: raw}}
  sink:  {unit: core.jsonl-sink, params: {path: results/out.jsonl}, inputs: {messages: raw}}
"""  # noqa: E501


def _lines(directory: Path) -> int:
    path = directory / "results" / "out.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _runs(directory: Path) -> dict[str, str]:
    listed = run_pipeline("runs", FILE, "--json", cwd=directory)
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r["state"] for r in json.loads(listed.stdout)["runs"]}


def test_a_watching_pipeline_is_reprocessed_after_it_stops_and_not_beside_it(tmp_path):
    (tmp_path / "in").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "in" / f"a{i}.txt").write_text(f"a{i}\n")
    (tmp_path / FILE).write_text(WATCHED)
    started = run_pipeline("run", FILE, "--detach", cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        wait_for(lambda: _lines(tmp_path) == 3, 60, "3 lines")
        beside = run_pipeline("reprocess", FILE, "--from", "r1", cwd=tmp_path, timeout=120)
        assert beside.returncode != 0, beside.stdout
        line = one_sentence(beside.stderr)
        assert "is already running locally (run r1" in line, line
        assert "pipeline stop" in line, line
        # refused before anything was recorded or copied
        assert _runs(tmp_path) == {"r1": "running"}
        assert not [k for k in store_contents(tmp_path / ".pipeline-data") if ".r2." in k[0]]
    finally:
        stopped = run_pipeline("stop", FILE, cwd=tmp_path, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # a replay holds what the stopped run's source had sent: it ends once that is through
    replayed = run_pipeline("reprocess", FILE, "--from", "r1", cwd=tmp_path, timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "run r2 replays 3 source messages of run r1" in replayed.stdout
    assert _runs(tmp_path) == {"r1": "stopped", "r2": "complete"}
