"""`pipeline run` of a file whose run is deployed on Nomad and still runs is refused before
anything is recorded (a second copy would write every result twice), also when Nomad cannot
be asked; once the deployment is stopped the file runs locally. Real `pipeline` processes
against the loopback Nomad (a contract test of Nomad's documented jobs API)."""

from __future__ import annotations

import json
from pathlib import Path

from fake_nomad import JOB_ID, FakeNomad

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


def _deployed(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("first\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    return file


def test_contract_nomad_api_run_is_refused_while_the_deployed_job_runs(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = _deployed(tmp_path)

    refused = run_pipeline("run", str(file), cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: job {JOB_ID} is deployed on Nomad and still runs; stop it first with "
        f"`pipeline stop {file}`\n"
    )
    assert "resuming" not in refused.stdout
    (r1,) = _runs(file)
    assert (r1["state"], r1["sessions"], r1["executor"]) == ("running", 1, "nomad")
    assert not (tmp_path / "results").exists()

    stopped = run_pipeline("stop", str(file), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    ran = run_pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "results" / "out.jsonl").read_text().count("first") == 1


def test_contract_nomad_api_run_is_refused_when_nomad_cannot_say_whether_the_job_runs(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = _deployed(tmp_path)
    nomad_env.stop()  # the cluster is out of reach from here

    refused = run_pipeline("run", str(file), cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith(
        f"error: the run is deployed on Nomad as job {JOB_ID}, and Nomad cannot be asked "
        "whether it still runs ("
    )
    assert f"stop it first with `pipeline stop {file}`" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    (r1,) = _runs(file)
    assert (r1["state"], r1["sessions"]) == ("running", 1)
