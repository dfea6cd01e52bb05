"""`pipeline start FILE` of a stopped Nomad job whose store no longer holds the run the job's
tasks were given (a Redis that came back empty) refuses in one sentence, registers nothing
and records no run. Nomad's `start` otherwise began a new run r1 in silence, and the source
sent every input again into results that held them. The run is read back from the job's
`Meta`, as Nomad's jobs API returns the registered job. Real `pipeline` processes against the
loopback Nomad double (a contract test; no Nomad agent runs here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad
from test_failed_deploy_says_nothing_resumed import deployed_file

from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

from helpers import run_pipeline


@pytest.mark.parametrize("kept_in", ["meta", "task_env"])
def test_contract_nomad_api_start_is_refused_when_the_store_lost_the_deployments_run(
    tmp_path: Path, nomad_env: FakeNomad, kept_in: str
):
    """`task_env`: a job deployed before the run was kept in its Meta, whose tasks' environment
    alone names it."""
    file = deployed_file(tmp_path)
    if kept_in == "task_env":
        registered = nomad_env.registered
        assert registered is not None
        meta = {k: v for k, v in registered["Meta"].items() if v != "r1"}
        nomad_env.registered = {**registered, "Meta": meta}
    stopped = run_pipeline("stop", str(file), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    # the store comes back empty (a Redis without persistence restarted)
    shutil.move(tmp_path / DEFAULT_DATA_DIR, tmp_path / "aside")

    started = run_pipeline("start", str(file), cwd=tmp_path)
    assert started.returncode == 1, started.stdout
    assert started.stderr.strip() == (
        f"error: the store no longer holds run r1 of this deployment of pipeline {JOB_ID} (it "
        "holds no run of this pipeline: its data was lost or emptied); `pipeline deploy --fresh "
        f"{file}` processes every input again"
    ), started.stderr
    (registration,) = nomad_env.calls("POST", "/v1/jobs")  # nothing registered again
    # where the refusal reads the deployment's run: the job's Meta, which Nomad keeps
    assert "r1" in registration.body["Job"]["Meta"].values()
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed  # no new run r1

    # what the sentence says to do: a new run, told to the job's tasks and kept in its Meta
    fresh = run_pipeline("deploy", "--fresh", str(file), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    again = nomad_env.calls("POST", "/v1/jobs")[-1].body["Job"]
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)["runs"]
    assert run["id"] in again["Meta"].values()
