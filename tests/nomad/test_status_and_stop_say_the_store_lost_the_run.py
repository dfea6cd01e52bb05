"""`pipeline status FILE` and `pipeline stop FILE` of a Nomad job whose store no longer holds the
run the job's tasks were given (a Redis that came back empty, an embedded store moved away)
say so in `start`'s words, and `status` exits 1. `status` showed every unit `not started` and
exited 0 without a word of it, and opened the store to be written (ending a job that ended on its
own), which made the moved store again, empty; `stop` stopped the job and recorded no end in
silence. The run is read back from the job's `Meta`, as Nomad's jobs API returns the registered
job. Real `pipeline` processes against the loopback Nomad double (a contract test; no Nomad agent
runs here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad, Reply, allocations
from test_failed_deploy_says_nothing_resumed import deployed_file

from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

from helpers import run_pipeline


def _deployed_then_emptied(tmp_path: Path) -> Path:
    """The pipeline file of a deployed job whose store was then moved away."""
    file = deployed_file(tmp_path)
    # the store comes back empty (a Redis without persistence restarted)
    shutil.move(tmp_path / DEFAULT_DATA_DIR, tmp_path / "aside")
    return file


def _lost(file: Path, so: str = "") -> str:
    return (
        f"warning: the store no longer holds run r1 of this deployment of pipeline {JOB_ID} "
        f"(it holds no run of this pipeline: its data was lost or emptied){so}; `pipeline "
        f"deploy --fresh {file}` processes every input again"
    )


def _ended_on_its_own(nomad: FakeNomad) -> None:
    """Nomad's answers for the batch job once every allocation ended complete: `dead`, not
    stopped, as registered (its Meta naming the run)."""
    ended = nomad.read_job()
    ended["Status"] = "dead"
    allocs = allocations()
    for alloc in allocs:
        alloc["ClientStatus"] = "complete"
    nomad.route("GET", rf"/v1/job/{JOB_ID}", Reply(body=ended))
    nomad.route("GET", rf"/v1/job/{JOB_ID}/allocations", Reply(body=allocs))


@pytest.mark.parametrize("job", ["running", "ended on its own"])
def test_contract_nomad_api_status_says_the_store_lost_the_deployments_run(
    tmp_path: Path, nomad_env: FakeNomad, job: str
):
    file = _deployed_then_emptied(tmp_path)
    if job == "ended on its own":
        _ended_on_its_own(nomad_env)

    shown = run_pipeline("status", str(file), cwd=tmp_path)
    # whatever the job does, its run is gone: exit 1, as for a failed run (it exited 0, and a
    # control system polling the exit code took it for a job that goes on)
    assert shown.returncode == 1, shown.stderr
    # one line, before the table; the job's part of it is still shown
    assert shown.stderr.splitlines() == [_lost(file)], shown.stderr
    assert f"job {JOB_ID}: batch, " in shown.stdout, shown.stdout
    as_json = run_pipeline("status", str(file), "--json", cwd=tmp_path)
    assert as_json.returncode == 1, as_json.stderr
    assert as_json.stderr.splitlines() == [_lost(file)], as_json.stderr
    assert json.loads(as_json.stdout)["id"] == JOB_ID  # stdout stays one JSON document
    assert not (tmp_path / DEFAULT_DATA_DIR).exists()  # nothing written, not even the store
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed


def test_contract_nomad_api_stop_stops_the_job_and_says_the_store_lost_its_run(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = _deployed_then_emptied(tmp_path)

    stopped = run_pipeline("stop", str(file), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert nomad_env.job_stopped  # what the operator asked for is done
    assert f"stopped job {JOB_ID}" in stopped.stdout, stopped.stdout
    assert stopped.stderr.splitlines() == [_lost(file, ", so no end was recorded")], stopped.stderr
    assert not (tmp_path / DEFAULT_DATA_DIR).exists()  # no end, so no store made to hold it
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed

    # what the sentence says to do: a new run, told to the job's tasks and kept in its Meta
    fresh = run_pipeline("deploy", "--fresh", str(file), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    again = nomad_env.calls("POST", "/v1/jobs")[-1].body["Job"]
    (run,) = json.loads(run_pipeline("runs", str(file), "--json", cwd=tmp_path).stdout)["runs"]
    assert run["id"] in again["Meta"].values()
    shown = run_pipeline("status", str(file), cwd=tmp_path)
    assert "no longer holds" not in shown.stderr, shown.stderr
