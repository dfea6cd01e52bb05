"""The nomad executor's commands, run as real `pipeline` processes against the loopback Nomad
(contract tests of Nomad's documented API, seen from the command line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_nomad import ALLOC_RUNNING, JOB_ID, TOKEN, FakeNomad, evaluation, metric

from asapo_pipelines.launchplan.jobspec import JobPlan, TaskGroupPlan, TaskResources, compile_job

RUN = "import sys\nfrom asapo_pipelines.cli import main\nmain(sys.argv[1:])\n"


def pipeline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], env=env, capture_output=True, timeout=120
    )


@pytest.fixture
def env(nomad_env: FakeNomad) -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    plan = JobPlan(
        id=JOB_ID,
        type="batch",
        namespace="beamline",
        groups=(
            TaskGroupPlan(
                name="scans", args=("worker", "f", "scans"), resources=TaskResources(memory_mb=4096)
            ),
        ),
    )
    path = tmp_path / "p65-xas.nomad.json"
    path.write_text(json.dumps(compile_job(plan)))
    return path


def test_contract_nomad_api_cli_deploy_a_compiled_job(
    env: dict[str, str], job_file: Path, nomad_env: FakeNomad
) -> None:
    done = pipeline("deploy", str(job_file), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == (
        "registered job p65-xas in namespace beamline (evaluation 5d1c9a3e complete)\n"
    )
    [register] = nomad_env.calls("POST", "/v1/jobs")
    assert register.body == json.loads(job_file.read_text())
    assert register.headers["X-Nomad-Token"] == TOKEN


def test_contract_nomad_api_cli_deploy_reports_placement_failures(
    env: dict[str, str], job_file: Path, nomad_env: FakeNomad
) -> None:
    nomad_env.eval_answers = [
        evaluation(
            "complete",
            failed={
                "scans": metric(
                    NodesExhausted=2,
                    DimensionExhausted={"memory": 2},
                    NodesFiltered=1,
                    ConstraintFiltered={"missing drivers": 1},
                )
            },
        )
    ]
    done = pipeline("deploy", str(job_file), env=env)
    assert done.returncode == 1
    err = done.stderr.decode().splitlines()
    assert err == [
        "unit scans cannot be placed: the raw_exec driver is not enabled on 1 node; enable it "
        'in the clients\' plugin "raw_exec" configuration (raw_exec is disabled by default)',
        "unit scans cannot be placed: not enough free memory for 4096 MB on 2 nodes; lower the "
        "unit's memory or add capacity",
        "error: job p65-xas is registered but Nomad cannot place scans yet; it will when "
        "capacity appears, or fix the causes above and deploy again",
    ]
    as_json = pipeline("deploy", "--json", str(job_file), env=env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["evaluation"]["placement_failures"][0]["unit"] == "scans"


def test_cli_deploy_refuses_a_misspelled_job_file(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Job": {"ID": "x", "TaskGroups": [], "Datacenter": ["dc1"]}}))
    done = pipeline("deploy", str(bad), env=env)
    assert done.returncode == 2
    [line] = done.stderr.decode().splitlines()
    assert line.startswith(f"error: {bad} is not a Nomad job payload: at Job, ")
    assert "Traceback" not in done.stderr.decode()


def test_contract_nomad_api_cli_status_and_json(env: dict[str, str]) -> None:
    done = pipeline("status", "--job", JOB_ID, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith("job p65-xas: batch, running, version 2, namespace beamline")
    assert "\nscans          0         0         1         0         1         0\n" in out
    assert f"  {ALLOC_RUNNING[:8]} p65-xas.scans[0] on hpc-node-07: running" in out
    assert "    task scans: running, 2 restarts" in out
    assert "Restarting: Task restarting in 5.2s" in out
    data = json.loads(pipeline("status", "--json", "--job", JOB_ID, env=env).stdout)
    assert data["groups"]["writer"]["Starting"] == 1


def test_contract_nomad_api_cli_logs(env: dict[str, str], nomad_env: FakeNomad) -> None:
    done = pipeline("logs", "--job", JOB_ID, "scans", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "scans stdout line 1\nscans stdout line 2 é\n"
    err = pipeline("logs", "--job", JOB_ID, "scans", "--stderr", env=env)
    assert err.stdout.decode() == "scans stderr line 1\nscans stderr line 2 é\n"


def test_contract_nomad_api_cli_stop_and_start(env: dict[str, str], nomad_env: FakeNomad) -> None:
    done = pipeline("stop", "--job", JOB_ID, "--purge", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "stopped and purged job p65-xas (evaluation 5d1c9a3e)\n"
    assert nomad_env.calls("DELETE", f"/v1/job/{JOB_ID}")[0].query["purge"] == ["true"]
    started = pipeline("start", "--job", JOB_ID, env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.decode() == "started job p65-xas\n"


def test_cli_errors_are_one_sentence_without_traceback(
    env: dict[str, str], fake_nomad: FakeNomad
) -> None:
    fake_nomad.stop()
    for args in (
        ("status", "--job", JOB_ID),
        ("logs", "--job", JOB_ID, "scans"),
        ("stop", "--job", JOB_ID),
    ):
        done = pipeline(*args, env=env)
        assert done.returncode == 1
        [line] = done.stderr.decode().splitlines()
        assert line.startswith(f"error: cannot reach Nomad at {env['NOMAD_ADDR']} (")
        assert TOKEN not in line
    usage = pipeline("status", env=env)
    assert usage.returncode == 2
    assert usage.stderr.decode() == (
        "error: give the pipeline file or --job ID (there is no *.pipeline.yaml here)\n"
    )


def test_contract_nomad_api_cli_status_of_a_file_shows_the_workers_counters(
    env: dict[str, str], tmp_path: Path
) -> None:
    # the workers' counters come from the transport, so they show below Nomad's job whatever
    # runs the workers (here one started by hand, on the file's embedded store)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    file = tmp_path / "p65-xas.pipeline.yaml"
    file.write_text(
        "pipeline: p65-xas\n"
        "units:\n"
        "  scans: {unit: core.files, params: {directory: files}, outputs: {files: raw}}\n"
        "deploy:\n  nomad: {namespace: beamline}\n"
    )
    worker = pipeline("worker", str(file), "scans", env=env)
    assert worker.returncode == 0, worker.stderr
    done = pipeline("status", str(file), env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith("job p65-xas: batch, running, version 2, namespace beamline")
    assert "pipeline p65-xas" in out  # the counters' table follows the job
    data = json.loads(pipeline("status", str(file), "--json", env=env).stdout)
    assert data["groups"]["writer"]["Starting"] == 1
    (scans,) = data["counters"]["workers"]
    assert (scans["instance"], scans["state"]) == ("scans", "finished")
    plain = pipeline("logs", str(file), "scans", "--plain", env=env)
    assert plain.returncode == 0, plain.stderr
