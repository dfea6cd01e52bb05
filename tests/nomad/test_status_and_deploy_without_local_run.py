"""`pipeline status FILE` of a Nomad-deployed file with no local run recorded, and `pipeline
deploy` whose `*_env` secret is unset in the deploying shell, against the loopback Nomad
double (a contract test of Nomad's jobs API; no Nomad agent runs here).

A deployment that exists is shown as before (the job's table, exit 0), whatever the local
records hold. `deploy` with the secret unset refused with "every worker would fail on it
too", untrue on Nomad, whose tasks read it from the job's Nomad variable (docs/nomad.md
"Secrets"); the sentence now says what needs it: this shell, to record the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad

from helpers import run_pipeline

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

VARIABLE = "P65_REDIS_PW"
NAMESPACE, PATH = "beamline", f"nomad/jobs/{JOB_ID}"


def _write(work: Path) -> Path:
    (work / "files").mkdir(parents=True, exist_ok=True)
    file = work / "p.pipeline.yaml"
    file.write_text(
        f"pipeline: {JOB_ID}\n"
        "transport:\n"
        "  redis:\n"
        "    url: redis://127.0.0.1:9/0\n"
        f"    password_env: {VARIABLE}\n"
        "    payload_dir: payloads\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        'deploy:\n  nomad: {datacenters: ["*"], driver: raw_exec}\n'
    )
    return file


def test_contract_nomad_api_deploy_with_the_secret_unset_here_says_what_needs_it(
    tmp_path: Path, nomad_env: FakeNomad
) -> None:
    nomad_env.variables[(NAMESPACE, PATH)] = {VARIABLE: "held-by-nomad"}
    refused = run_pipeline("deploy", str(_write(tmp_path)), cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: the environment variable {VARIABLE} (the Redis password) is not set; this "
        "shell needs it to record the run (the tasks read `*_env` secrets from the Nomad "
        f"variable {PATH}), so nothing was submitted\n"
    )
    assert nomad_env.calls("POST", "/v1/jobs") == []


def test_contract_nomad_api_status_of_a_deployment_without_local_run_is_unchanged(
    tmp_path: Path, nomad_env: FakeNomad, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's table while Nomad answers; its own error, exit 1, while it does not: the
    deployment's run is recorded here, so no "no local run" sentence and no exit 2."""
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(  # the embedded store beside the file records the deployment's run
        f"pipeline: {JOB_ID}\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        'deploy:\n  nomad: {datacenters: ["*"], driver: raw_exec}\n'
    )
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    shown = run_pipeline("status", str(file), cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"job {JOB_ID}" in shown.stdout, shown.stdout
    assert "no local run" not in shown.stdout + shown.stderr

    monkeypatch.setenv("NOMAD_ADDR", "http://127.0.0.1:9")  # nobody listens
    unreachable = run_pipeline("status", str(file), cwd=tmp_path)
    assert unreachable.returncode == 1, unreachable.stdout + unreachable.stderr
    assert unreachable.stderr == (
        "error: cannot reach Nomad at http://127.0.0.1:9 (connection refused); check "
        "NOMAD_ADDR and that the agent is running\n"
    )
