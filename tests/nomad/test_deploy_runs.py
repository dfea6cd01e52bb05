"""A Nomad deployment is a run like `pipeline run`'s: recorded in the pipeline's store before
anything is submitted, a changed configuration refused, `--fresh` a new run, the run id handed to
every task, and `pipeline stop` ending it. Driven as real `pipeline` processes against the
loopback Nomad (a contract test of Nomad's documented jobs API; no Nomad agent runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad, Reply, allocations, job

from asapo_pipelines.worker.launch import RUN_ENV

from helpers import run_pipeline

PIPELINE = f"""\
pipeline: {JOB_ID}
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt"}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  nomad: {{datacenters: ["*"], driver: raw_exec}}
"""


def _runs(file: Path) -> list[dict]:
    listed = run_pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


def _run_env_of_registered_jobs(nomad: FakeNomad) -> list[set[str]]:
    """The run each registered job tells its tasks, one set per registration."""
    return [
        {
            task["Env"][RUN_ENV]
            for group in call.body["Job"]["TaskGroups"]
            for task in group["Tasks"]
        }
        for call in nomad.calls("POST", "/v1/jobs")
    ]


def test_contract_nomad_api_a_deployment_is_a_recorded_run(tmp_path: Path, nomad_env: FakeNomad):
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)

    first = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"run r1 of pipeline {JOB_ID} starts" in first.stdout
    assert _run_env_of_registered_jobs(nomad_env) == [{"r1"}]
    (r1,) = _runs(file)
    recorded = (r1["id"], r1["mode"], r1["state"], r1["executor"])
    assert recorded == ("r1", "deploy", "running", "nomad")
    assert r1["file"] == str(file.resolve())

    # a changed parameter: refused in one sentence before anything is submitted
    file.write_text(PIPELINE.replace("payload: text", "payload: base64"))
    refused = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert 'sink (payload "text" -> "base64")' in refused.stderr
    assert len(nomad_env.calls("POST", "/v1/jobs")) == 1
    assert [r["id"] for r in _runs(file)] == ["r1"]

    fresh = run_pipeline("deploy", "--fresh", str(file), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert f"run r2 of pipeline {JOB_ID} starts" in fresh.stdout
    assert _run_env_of_registered_jobs(nomad_env) == [{"r1"}, {"r2"}]

    stopped = run_pipeline("stop", str(file), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    by_id = {r["id"]: r for r in _runs(file)}
    assert by_id["r2"]["state"] == "stopped"
    assert by_id["r2"]["configurations"]["sink"]["params"]["payload"] == "base64"
    # r1 was never stopped by its own deployment: it stays as recorded, listed until pruned
    assert by_id["r1"]["state"] == "running"


def test_contract_nomad_api_a_failed_submission_ends_its_run_as_failed(
    tmp_path: Path, nomad_env: FakeNomad
):
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    nomad_env.stop()  # Nomad goes away: the submission cannot reach it
    done = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (r1,) = _runs(file)
    assert r1["state"] == "failed"


def _finished_on_nomad(nomad: FakeNomad, last_scans: str) -> None:
    """Nomad's answers for a batch job whose allocations all ended: the job `dead` but not
    stopped, the writer complete, and the newest `scans` allocation `last_scans` (its older
    one failed and was rescheduled)."""
    ended = job(stop=False)
    ended["Status"] = "dead"
    allocs = allocations()
    for alloc in allocs:
        alloc["ClientStatus"] = "failed" if alloc["CreateIndex"] == 50 else "complete"
        if alloc["TaskGroup"] == "scans" and alloc["CreateIndex"] == 60:
            alloc["ClientStatus"] = last_scans
    nomad.route("GET", rf"/v1/job/{JOB_ID}", Reply(body=ended))
    nomad.route("GET", rf"/v1/job/{JOB_ID}/allocations", Reply(body=allocs))


@pytest.mark.parametrize(("last_scans", "ended"), [("complete", "complete"), ("failed", "failed")])
def test_contract_nomad_api_a_batch_job_that_ended_on_its_own_ends_its_run(
    tmp_path: Path, nomad_env: FakeNomad, last_scans: str, ended: str
):
    """Nomad reports a finished batch job as `dead` whether its work was done or it failed
    for good; the run ends as its newest allocations say, instead of staying `running`."""
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    assert run_pipeline("deploy", str(file), cwd=tmp_path).returncode == 0
    _finished_on_nomad(nomad_env, last_scans)

    shown = run_pipeline("status", str(file), cwd=tmp_path)
    # a job that failed for good exits 1, as a failed local run or Slurm deployment (it
    # exited 0), with --json too
    assert shown.returncode == (1 if ended == "failed" else 0), shown.stderr
    assert f"job {JOB_ID}: batch, dead ({ended})" in shown.stdout
    as_json = run_pipeline("status", str(file), "--json", cwd=tmp_path)
    assert as_json.returncode == shown.returncode, as_json.stderr
    assert json.loads(as_json.stdout)["state"] == ended
    (r1,) = _runs(file)
    assert r1["state"] == ended
