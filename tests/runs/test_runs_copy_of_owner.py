"""A copy of a pipeline file that keeps its `pipeline:` name (copy the example, edit it): `run`
refuses it, and the commands that read the runs through it say that what they show is the
owner file's, rather than pass the owner's runs off as the copy's; `prune` through it is
refused. Real `pipeline` commands on a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runs_helpers import one_sentence

from helpers import run_pipeline

DEMO = """\
pipeline: demo
units:
  files:
    unit: core.files
    params: {directory: data}
    outputs: {files: files}
  identity:
    unit: core.identity
    inputs: {input: files}
    outputs: {output: output}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: output}
"""

#: the read commands, each with what its stdout shows of the owner's run
READS = {
    "runs": (["runs"], "r1"),
    "tail": (["tail", "{file}", "output"], "default#1"),
    "status": (["status"], "demo"),
    "streams": (["streams"], "demo.r1.output"),
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo.pipeline.yaml run once (its run r1 owns the name), and mine.pipeline.yaml: a copy
    that writes another results file and keeps the name."""
    directory = tmp_path_factory.mktemp("copy")
    (directory / "data").mkdir()
    (directory / "data" / "x.txt").write_text("x\n")
    (directory / "demo.pipeline.yaml").write_text(DEMO)
    done = run_pipeline("run", "demo.pipeline.yaml", cwd=directory, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    mine = DEMO.replace("results/out.jsonl", "results/mine.jsonl")
    (directory / "mine.pipeline.yaml").write_text(mine)
    return directory


def _args(command: str, file: str) -> list[str]:
    args, _ = READS[command]
    return [a.format(file=file) for a in args] + ([] if "{file}" in args else [file])


def _owned_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "belongs to" in line]


@pytest.mark.parametrize("command", sorted(READS))
def test_a_read_through_the_copy_says_whose_runs_it_shows(ran, command):
    done = run_pipeline(*_args(command, "mine.pipeline.yaml"), cwd=ran)
    assert done.returncode == 0, done.stdout + done.stderr
    assert READS[command][1] in done.stdout  # still shown: the copy may read them
    owner = (ran / "demo.pipeline.yaml").resolve()
    owned = _owned_lines(done.stderr)
    assert len(owned) == 1, f"no warning that the runs are {owner}'s: {done.stderr!r}"
    line = owned[0]
    assert line.startswith(f"warning: pipeline name 'demo' in this store belongs to {owner}:")
    assert "not mine.pipeline.yaml's" in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", sorted(READS))
def test_the_owner_reads_its_runs_without_a_warning(ran, command):
    done = run_pipeline(*_args(command, "demo.pipeline.yaml"), cwd=ran)
    assert done.returncode == 0, done.stdout + done.stderr
    assert READS[command][1] in done.stdout
    assert _owned_lines(done.stderr) == []


def test_the_warning_leaves_json_on_stdout_whole(ran):
    done = run_pipeline("runs", "mine.pipeline.yaml", "--json", cwd=ran)
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in json.loads(done.stdout)["runs"]] == ["r1"]
    assert len(_owned_lines(done.stderr)) == 1


@pytest.mark.parametrize("how", [["--run", "r1"], ["--older-than", "1s"]])
def test_prune_through_the_copy_is_refused_as_run_is(ran, how):
    refused_run = run_pipeline("run", "mine.pipeline.yaml", cwd=ran)
    assert refused_run.returncode == 1
    done = run_pipeline("prune", "mine.pipeline.yaml", *how, cwd=ran)
    assert done.returncode == 1, done.stdout + done.stderr
    assert one_sentence(done.stderr) == one_sentence(refused_run.stderr)
    # the owner's run is untouched
    listed = run_pipeline("runs", "demo.pipeline.yaml", "--json", cwd=ran)
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == ["r1"]
    held = run_pipeline("tail", "demo.pipeline.yaml", "output", cwd=ran)
    assert "default#1" in held.stdout


def test_status_of_a_copy_whose_deploy_names_a_cluster_shows_the_owners_local_run(ran):
    """The copy's `deploy:` section names Nomad: `status` went to a Nomad agent nobody runs
    and failed ("cannot reach Nomad"), where the counters it promises are the owner's local
    run's."""
    import os

    nomad = DEMO + "deploy:\n  nomad:\n    datacenters: ['*']\n    driver: raw_exec\n"
    (ran / "cluster.pipeline.yaml").write_text(nomad)
    env = {**os.environ, "NOMAD_ADDR": "http://127.0.0.1:9"}  # nothing listens there
    done = run_pipeline("status", "cluster.pipeline.yaml", cwd=ran, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nomad" not in done.stdout + done.stderr
    assert "job demo (batch): complete" in done.stdout, done.stdout
    (line,) = _owned_lines(done.stderr)
    assert "not cluster.pipeline.yaml's" in line


def test_a_renamed_owner_is_told_to_take_its_name_back_which_keeps_its_runs(tmp_path):
    """Renaming the pipeline file locked it out of its own runs with the advice to give one
    of 'the two files' another `pipeline:` name, which starts over: there is one file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x\n")
    (tmp_path / "demo.pipeline.yaml").write_text(DEMO)
    first = run_pipeline("run", "demo.pipeline.yaml", cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    (tmp_path / "demo.pipeline.yaml").rename(tmp_path / "renamed.pipeline.yaml")
    refused = run_pipeline("run", "renamed.pipeline.yaml", cwd=tmp_path, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = one_sentence(refused.stderr)
    owner = (tmp_path / "demo.pipeline.yaml").resolve()
    assert f"belongs to {owner}, which no longer exists here" in said, said
    assert f"mv {(tmp_path / 'renamed.pipeline.yaml').resolve()} {owner}" in said, said
    # `status` of the renamed file says the same, not to rename `pipeline:` (which starts over)
    status = run_pipeline("status", "renamed.pipeline.yaml", cwd=tmp_path)
    (line,) = _owned_lines(status.stderr)
    assert f"belongs to {owner}, which no longer exists here" in line, line
    assert f"mv {(tmp_path / 'renamed.pipeline.yaml').resolve()} {owner}" in line, line
    assert "rename `pipeline:`" not in status.stderr, status.stderr
    # the advice taken: the file goes on with its run
    (tmp_path / "renamed.pipeline.yaml").rename(owner)
    again = run_pipeline("run", "demo.pipeline.yaml", cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run r1" in again.stdout + again.stderr
