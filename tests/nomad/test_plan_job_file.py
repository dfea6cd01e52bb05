"""`pipeline plan FILE --json` prints the job as Nomad's API takes it (`{"Job": {...}}`), a file
every command accepts as a compiled job; and `python: {install: {}}` installs every plugin
distribution the pipeline uses, its transport's too. Real `pipeline` processes against the
loopback Nomad (a contract test of Nomad's documented jobs API; no Nomad agent runs here)."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad

from helpers import run_pipeline

ROOT = Path(__file__).resolve().parents[2]

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


def test_contract_nomad_api_plan_json_is_a_job_file_that_plan_and_run_accept(
    tmp_path: Path, nomad_env: FakeNomad
):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("first\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)

    planned = run_pipeline("plan", str(file), "--json", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    job = json.loads(planned.stdout)
    assert list(job) == ["Job"]
    assert job["Job"]["ID"] == JOB_ID
    # what would change on the cluster is still said, beside the job
    assert "changes against the cluster:" in planned.stderr
    job_file = tmp_path / "job.json"
    job_file.write_text(planned.stdout)

    again = run_pipeline("plan", str(job_file), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == job

    ran = run_pipeline("run", str(job_file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "results" / "out.jsonl").read_text().count("first") == 1


def _install_requirements(job: dict) -> set[str]:
    """The `name==version` pins the job's install task hands pip."""
    pins: set[str] = set()
    for group in job["Job"]["TaskGroups"]:
        for task in group["Tasks"]:
            if (task.get("Lifecycle") or {}).get("Hook") == "prestart":
                args = " ".join(task["Config"].get("args") or [])
                pins |= set(re.findall(r"asapo-pipelines[a-z-]*==[^\s'\"]+", args))
    return pins


def test_install_takes_the_transports_plugin_distribution(tmp_path: Path, clean_nomad_env: None):
    # the P65 example on Redis: the reference plugins (the `all` session has them)
    for plugin in ("asapo_pipelines_redis", "asapo_pipelines_xas", "asapo_pipelines_nexus"):
        pytest.importorskip(plugin, reason="needs the reference plugins")
    example = (ROOT / "examples" / "p65-xas.pipeline.yaml").read_text()
    text = re.sub(
        r"(?m)^transport: .*$",
        'transport: {redis: {url: "redis://127.0.0.1:1/0", key_prefix: "p65"}}',
        example,
    ).replace("    driver: raw_exec\n", "    driver: raw_exec\n    python: {install: {}}\n")
    file = tmp_path / "p65-xas.pipeline.yaml"
    file.write_text(text)

    planned = run_pipeline(
        "plan", str(file), "--json", cwd=tmp_path, env={"NOMAD_ADDR": "http://127.0.0.1:9"}
    )
    assert planned.returncode == 0, planned.stderr
    pins = _install_requirements(json.loads(planned.stdout))
    assert f"asapo-pipelines-redis=={version('asapo-pipelines-redis')}" in pins
    assert {p.split("==")[0] for p in pins} == {
        "asapo-pipelines",
        "asapo-pipelines-nexus",
        "asapo-pipelines-redis",
        "asapo-pipelines-xas",
    }
