"""A Redis transport whose password comes from `password_env`, deployed on Nomad: Nomad tasks
do not get the environment of the shell that deploys them, so the job renders the variable into
every worker's environment from the job's Nomad variable `nomad/jobs/<pipeline>` (key: the
variable's name), as it does asapo's `token_env`, and the password never appears in the job.
`pipeline validate` and `run` of such a file no longer refuse it (P112 is given no more), and
`pipeline deploy` refuses, submitting nothing, when Nomad holds no such variable or key: every
task would wait on its template. Real `pipeline` processes against the loopback Nomad double (a
contract test of Nomad's jobs and variables API; no Nomad agent runs here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_nomad import JOB_ID, FakeNomad

from helpers import run_pipeline

pytest.importorskip("asapo_pipelines_redis", reason="needs the redis plugin (plugins/redis)")

VARIABLE = "P65_REDIS_PW"
PASSWORD = "right-horse-battery"
NOMAD = 'deploy:\n  nomad: {datacenters: ["*"], driver: raw_exec}\n'
#: the namespace `nomad_env` sets (NOMAD_NAMESPACE) and the job's own variable
NAMESPACE, PATH = "beamline", f"nomad/jobs/{JOB_ID}"


def _write(work: Path, url: str = "redis://127.0.0.1:9/0", deploy: str = NOMAD) -> Path:
    """`url`: by default nothing listens there (deploy's ask of Redis is a warning)."""
    (work / "files").mkdir(parents=True, exist_ok=True)
    file = work / "p.pipeline.yaml"
    file.write_text(
        f"pipeline: {JOB_ID}\n"
        "transport:\n"
        "  redis:\n"
        f"    url: {url}\n"
        f"    password_env: {VARIABLE}\n"
        "    payload_dir: payloads\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
        + deploy
    )
    return file


def _workers(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        task
        for group in job["TaskGroups"]
        for task in group["Tasks"]
        if not task.get("Lifecycle")  # the prestart install task opens no transport
    ]


def test_validate_of_password_env_with_deploy_nomad_is_valid(tmp_path: Path):
    checked = run_pipeline("validate", str(_write(tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "P112" not in checked.stdout + checked.stderr


def test_contract_nomad_api_deployed_job_renders_password_env_from_the_nomad_variable(
    tmp_path: Path, nomad_env: FakeNomad
):
    """The Nomad variable holds the password: the job is registered, each worker renders the
    variable from it into its environment, and the password is nowhere in the job."""
    from asapo_pipelines.launchplan.jobspec import VarRef, task_secrets

    nomad_env.variables[(NAMESPACE, PATH)] = {VARIABLE: PASSWORD}
    file = _write(tmp_path)
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path, env={VARIABLE: PASSWORD})
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    (registered,) = nomad_env.calls("POST", "/v1/jobs")
    assert PASSWORD not in json.dumps(registered.body)
    workers = _workers(registered.body["Job"])
    assert [t["Name"] for t in workers] == ["files", "sink"]
    for task in workers:
        assert task_secrets(task) == [VarRef(VARIABLE, PATH, VARIABLE)]
        assert VARIABLE not in (task.get("Env") or {})
    # the variable was read in the job's namespace, with the deploying token
    (read,) = nomad_env.calls("GET", f"/v1/var/{PATH}")
    assert read.query.get("namespace") == [NAMESPACE]


@pytest.mark.parametrize("held", ["no variable", "another key"])
def test_contract_nomad_api_deploy_without_the_variable_or_key_is_refused(
    tmp_path: Path, nomad_env: FakeNomad, held: str
):
    """Nothing is submitted and no run recorded; the sentence names the command that gives
    the key (`var put` alone would replace the keys a variable holds)."""
    if held == "another key":
        nomad_env.variables[(NAMESPACE, PATH)] = {"ASAPO_TOKEN": "t"}
        command = (
            f"nomad var get -namespace {NAMESPACE} {PATH} | nomad var put -namespace "
            f"{NAMESPACE} -in=json - {VARIABLE}=..."
        )
        lack = f"which has no {VARIABLE}"
    else:
        command = f"nomad var put -namespace {NAMESPACE} {PATH} {VARIABLE}=..."
        lack = "which does not exist"
    file = _write(tmp_path)
    refused = run_pipeline("deploy", str(file), cwd=tmp_path, env={VARIABLE: PASSWORD})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: the job's tasks read {VARIABLE} from the Nomad variable {PATH} in namespace "
        f"{NAMESPACE}, {lack}, and would wait for it; give it with `{command}` (nothing was "
        "submitted)\n"
    )
    assert nomad_env.calls("POST", "/v1/jobs") == []
    listed = run_pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "{}").get("runs", []) == [], listed


def test_contract_nomad_api_deploy_of_asapo_token_env_checks_its_variable_too(
    tmp_path: Path, nomad_env: FakeNomad
):
    """asapo's `token_env` is rendered the same way, and deploy asks for its variable first."""
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
    refused = run_pipeline("deploy", str(file), cwd=tmp_path, env={"ASAPO_TOKEN": "t"})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"`nomad var put -namespace {NAMESPACE} {PATH} ASAPO_TOKEN=...`" in refused.stderr
    assert nomad_env.calls("POST", "/v1/jobs") == []


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_run_here_of_password_env_with_deploy_nomad_reads_the_password_from_the_environment(
    tmp_path: Path,
):
    """The same file run here (`pipeline run`): the workers get the variable from the shell,
    and a real Redis that requires the password carries every message."""
    from asapo_pipelines_redis.testing import RedisServer

    with RedisServer(tmp_path / "server", password=PASSWORD) as server:
        file = _write(tmp_path / "work", url=server.url)
        for i in range(3):
            (tmp_path / "work" / "files" / f"f{i}.txt").write_text(f"file {i}\n")
        done = run_pipeline("run", str(file), cwd=file.parent, env={VARIABLE: PASSWORD})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "P112" not in done.stdout + done.stderr
    assert len((file.parent / "out.jsonl").read_text().splitlines()) == 3
    assert PASSWORD not in done.stdout + done.stderr
