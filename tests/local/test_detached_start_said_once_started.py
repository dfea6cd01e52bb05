"""`pipeline run --detach` says which run it starts or resumes only once its supervisor started,
as `deploy` says it once its submission succeeded. Said before, "resuming run r1 of pipeline
... (unchanged)" was followed by the error of a supervisor that refused to start (here: the
machine's limit on units, `ASAPO_PIPELINES_MAX_UNITS`), though nothing resumed. Real `pipeline`
processes, a real embedded store, real workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import read_state, run_pipeline, wait_for

PIPELINE = """\
pipeline: said
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt"}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
"""
#: fewer units than the pipeline's two: the detached supervisor refuses to start
TOO_FEW = {"ASAPO_PIPELINES_MAX_UNITS": "1"}
REFUSED = (
    "error: job said has 2 units (counting replicas), more than the 1 the local executor runs; "
    "split the pipeline, or set ASAPO_PIPELINES_MAX_UNITS if this machine can take it"
)


def _pipeline(tmp_path: Path, *, ran: bool) -> Path:
    """The pipeline file; with `ran`, after a complete foreground run (its r1 resumes)."""
    (tmp_path / "files").mkdir()
    for name in ("a", "b"):
        (tmp_path / "files" / f"{name}.txt").write_text(f"{name}\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    if ran:
        done = run_pipeline("run", str(file), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    return file


@pytest.mark.parametrize("ran", [True, False], ids=["resumed", "first"])
@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
def test_a_detached_start_that_fails_says_only_its_error(
    tmp_path: Path, ran: bool, json_flag: tuple[str, ...]
):
    file = _pipeline(tmp_path, ran=ran)
    done = run_pipeline("run", "--detach", *json_flag, str(file), cwd=tmp_path, env=TOO_FEW)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.strip() == REFUSED  # nothing said of a run: no "resuming run r1"


def test_a_detached_start_that_succeeds_says_it_resumes_the_run(tmp_path: Path):
    file = _pipeline(tmp_path, ran=True)
    done = run_pipeline("run", "--detach", str(file), cwd=tmp_path)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "said"
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        said, background = done.stdout.splitlines()
        assert said == "resuming run r1 of pipeline said (unchanged)"
        assert background.startswith("job said runs in the background (supervisor pid ")
        assert done.stderr == ""
        wait_for(
            lambda: (read_state(run_dir) or {}).get("status") == "complete",
            timeout=60,
            what="the resumed run to complete",
        )
    finally:
        run_pipeline("stop", str(file), cwd=tmp_path)
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)["runs"][0]["sessions"] == 2
