"""`pipeline deploy` with the local executor is a `pipeline run --detach --json`, and says what
that run says to the user: which run it starts or resumes (on stdout, on stderr with --json,
whose stdout is the JSON document alone) and its warnings (on stderr). Before, deploy dropped
the run's stderr when it succeeded: the user never read "resuming run r1" nor a warning. Real
`pipeline` processes, a real embedded store, real workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import run_pipeline

PIPELINE = """\
pipeline: said
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt", watch: true}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
"""
DEPLOYED = "deployed pipeline said with the local executor: "


def _deploy(file: Path, *flags: str) -> tuple[list[str], str]:
    """Deploy FILE and stop it again: what the deploy said on stdout (lines) and on stderr."""
    cwd = file.parent
    done = run_pipeline("deploy", str(file), "--executor", "local", *flags, cwd=cwd)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        run_pipeline("stop", str(file), cwd=cwd)
    return done.stdout.splitlines(), done.stderr


def test_local_deploy_says_which_run_it_starts_or_resumes_and_the_runs_warnings(tmp_path: Path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)

    said, err = _deploy(file)
    assert said[0] == "run r1 of pipeline said starts", said
    assert said[1].startswith(DEPLOYED), said
    assert err == ""

    # deployed again after its stop: the run resumes, as `pipeline run --detach` says it
    said, err = _deploy(file)
    assert said[0] == "resuming run r1 of pipeline said (unchanged)", said
    assert said[1].startswith(DEPLOYED), said
    assert err == ""

    # with --json, stdout is the document alone and the sentence goes to stderr
    said, err = _deploy(file, "--json")
    assert json.loads("\n".join(said))["run"] == "r1"
    assert err == "resuming run r1 of pipeline said (unchanged)\n"

    # a warning of the run is passed on: run records moved aside, the store holds r1's data
    shutil.move(tmp_path / ".pipeline-data" / "said.runs", tmp_path / "said.runs.aside")
    said, err = _deploy(file, "--fresh")
    assert said[0] == "run r2 of pipeline said starts", said
    assert err == (
        "warning: the store holds data of run r1 of pipeline said without a record (the run "
        "records were moved aside or lost): this run is r2, so that it computes its results "
        "afresh\n"
    )


def test_a_local_deploy_that_fails_says_only_its_error(tmp_path: Path):
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    # fewer units than the pipeline's two: the detached supervisor refuses to start
    done = run_pipeline(
        "deploy",
        str(file),
        "--executor",
        "local",
        cwd=tmp_path,
        env={"ASAPO_PIPELINES_MAX_UNITS": "1"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        "error: job said has 2 units (counting replicas), more than the 1 the local executor "
        "runs; split the pipeline, or set ASAPO_PIPELINES_MAX_UNITS if this machine can take it\n"
    )
