"""A Redis transport whose password comes from `password_env`, deployed on Nomad: Nomad tasks
do not get the environment of the shell that deploys them, so every worker died on the missing
password (exit 78) after `deploy` had found the variable set where it ran and registered the
job. Now `pipeline validate` of a file whose `deploy:` names Nomad is an error at the
`password_env` line (P112), and `pipeline deploy` to Nomad (named, or the default) refuses at
the same place, registering nothing and recording no run; `password_file` deploys. Real
`pipeline` processes against the loopback Nomad double (a contract test of Nomad's jobs API;
no Nomad agent runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad

from helpers import run_pipeline

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

VARIABLE = "P65_REDIS_PW"
NOMAD = 'deploy:\n  nomad: {datacenters: ["*"], driver: raw_exec}\n'
SENTENCE = (
    f"password_env {VARIABLE}: Nomad tasks do not get the environment of the shell that deploys "
    f"them, so every worker would fail without {VARIABLE}; use password_file on a path every "
    "Nomad client mounts"
)


def _write(work: Path, secret: str, deploy: str) -> Path:
    (work / "files").mkdir(exist_ok=True)
    (work / "secrets").mkdir(exist_ok=True)
    (work / "secrets" / "redis").write_text("right-horse-battery\n")
    file = work / "p.pipeline.yaml"
    file.write_text(
        f"pipeline: {JOB_ID}\n"
        "transport:\n"
        "  redis:\n"
        # nothing listens there: the refusal comes before Redis is asked
        "    url: redis://127.0.0.1:9/0\n"
        f"    {secret}\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        + deploy
    )
    return file


def _place(file: Path, key: str) -> str:
    """file:line:column of `key`'s value in the file, as the loader counts them (from 1)."""
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        name, colon, value = line.partition(":")
        if colon and name.strip() == key:
            return f"{file}:{number}:{len(line) - len(value.lstrip()) + 1}"
    raise AssertionError(f"{key} is not in {file}")


def test_validate_of_password_env_with_deploy_nomad_is_an_error_at_its_line(tmp_path: Path):
    file = _write(tmp_path, f"password_env: {VARIABLE}", NOMAD)
    checked = run_pipeline("validate", str(file), env={VARIABLE: "right-horse-battery"})
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{_place(file, 'password_env')}: error P112 {SENTENCE}" in checked.stdout.splitlines()

    # the same file run here, or deployed to Slurm, hands its workers the environment
    file = _write(tmp_path, f"password_env: {VARIABLE}", "")
    checked = run_pipeline("validate", str(file))
    assert "P112" not in checked.stdout, checked.stdout


@pytest.mark.parametrize("deploy", ["named", "default"])
def test_contract_nomad_api_deploy_of_password_env_is_refused_at_its_line(
    tmp_path: Path, nomad_env: FakeNomad, deploy: str
):
    """`default`: a file without a `deploy:` section, which `pipeline deploy` sends to Nomad."""
    file = _write(tmp_path, f"password_env: {VARIABLE}", NOMAD if deploy == "named" else "")
    refused = run_pipeline("deploy", str(file), cwd=tmp_path, env={VARIABLE: "x"})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: {_place(file, 'password_env')}: P112 {SENTENCE} (nothing was submitted)\n"
    )
    assert nomad_env.calls("POST", "/v1/jobs") == []
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed


def test_contract_nomad_api_deploy_of_password_file_registers_the_job(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = _write(tmp_path, "password_file: secrets/redis", NOMAD)
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "P112" not in deployed.stderr
    (registered,) = nomad_env.calls("POST", "/v1/jobs")
    assert "right-horse-battery" not in json.dumps(registered.body)


def test_contract_nomad_api_deploy_of_asapo_token_env_is_not_refused_for_it(
    tmp_path: Path, nomad_env: FakeNomad
):
    """The asapo transport's `token_env` reaches the tasks from a Nomad variable the job
    renders into their environment: not refused for it, the deploy goes on to ask ASAP::O
    (which nobody runs here: its sentence is the one said)."""
    (tmp_path / "files").mkdir()
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(
        f"pipeline: {JOB_ID}\n"
        "transport:\n"
        '  asapo: {endpoint: "127.0.0.1:9", beamtime: "11012345", token_env: ASAPO_TOKEN}\n'
        "units:\n"
        "  files: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        + NOMAD
    )
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path, env={"ASAPO_TOKEN": "t"})
    assert "P112" not in deployed.stderr
    # registered, or (the asapo client installed) refused by the ASAP::O nobody runs here
    assert deployed.returncode == 0 or deployed.stderr.startswith("error: ASAP::O at 127.0.0.1:9")
