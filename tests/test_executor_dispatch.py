"""`pipeline status`, `logs` and `stop` take one path (#14): the executor is chosen once, by one
rule, then only its methods are called. Driven as real `pipeline` processes on real files; a
dead NOMAD_ADDR shows that the environment no longer picks the executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.executor import choose_for_command
from asapo_pipelines.pipeline import load_pipeline

from helpers import run_pipeline

PIPELINE = """\
pipeline: by-hand
units:
  files:
    unit: core.files
    params: {directory: files}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: out/all.jsonl, payload: text}
    inputs: {messages: raw}
"""
#: nothing listens there: a command that went to Nomad would fail to reach it
DEAD_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


@pytest.fixture
def file(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    for i in range(3):
        (tmp_path / "files" / f"f{i}.txt").write_text(f"file {i}\n")
    path = tmp_path / "by-hand.pipeline.yaml"
    path.write_text(PIPELINE)
    return path


def test_status_of_workers_started_by_hand_shows_their_counters(file: Path) -> None:
    for unit in ("files", "sink"):
        done = run_pipeline("worker", str(file), unit, cwd=file.parent)
        assert done.returncode == 0, done.stderr
    report = run_pipeline("status", str(file), "--json", env=DEAD_NOMAD)
    assert report.returncode == 0, report.stderr
    sink = next(w for w in json.loads(report.stdout)["workers"] if w["instance"] == "sink")
    assert (sink["received"], sink["processed"], sink["errors"]) == (3, 3, 0)
    table = run_pipeline("status", str(file), env=DEAD_NOMAD)
    assert table.returncode == 0, table.stderr
    assert "pipeline by-hand" in table.stdout
    assert "finished" in table.stdout


@pytest.mark.parametrize("command", ["status", "stop"])
def test_the_local_executor_without_a_run_is_one_sentence(file: Path, command: str) -> None:
    done = run_pipeline(command, str(file), "--executor", "local", env=DEAD_NOMAD)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: no local run of {file} is recorded; start one with `pipeline run`\n"
    )
    logs = run_pipeline("logs", str(file), "sink", "--executor", "local", env=DEAD_NOMAD)
    assert logs.returncode == 2
    assert logs.stderr == done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("status", "--job", "x", "--executor", "local"),
            "the local executor has no --job option for `pipeline status`",
        ),
        (
            ("logs", "FILE", "sink", "--task", "install-env", "--executor", "nomad"),
            "the nomad executor has no --task option for `pipeline logs`",
        ),
        (
            ("status", "FILE", "--run-dir", "somewhere", "--executor", "nomad"),
            "the nomad executor has no --run-dir option for `pipeline status`",
        ),
        (
            ("stop", "FILE", "--executor", "local", "--purge"),
            "the local executor has no --purge option for `pipeline stop`",
        ),
        (
            ("logs", "FILE", "sink", "--plain", "--executor", "local"),
            "the local executor has no --plain option for `pipeline logs`",
        ),
        (
            ("status", "FILE", "--job", "x"),
            "give either a pipeline file or --job ID, not both",
        ),
    ],
)
def test_an_option_the_executor_does_not_know_is_one_sentence(
    file: Path, args: tuple[str, ...], expected: str
) -> None:
    done = run_pipeline(*(str(file) if a == "FILE" else a for a in args), env=DEAD_NOMAD)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {expected}\n"


def test_one_rule_chooses_the_executor(file: Path) -> None:
    catalog = Catalog.load()
    plain = load_pipeline(file, catalog)

    def chosen(pipeline, given=None, name=None, default=None):
        found = choose_for_command(pipeline, catalog, file, given or {}, name, default=default)
        return found.name if found else None

    assert chosen(plain) is None  # `status`: the counters alone
    assert chosen(plain, default="nomad") == "nomad"
    assert chosen(plain, {"job": "p"}) == "nomad"
    assert chosen(plain, {"run_dir": "r"}) == "local"
    deployed = file.with_name("deployed.pipeline.yaml")
    deployed.write_text(PIPELINE + "deploy:\n  nomad: {datacenters: [dc1]}\n")
    on_nomad = load_pipeline(deployed, catalog)
    assert chosen(on_nomad) == "nomad"
    assert chosen(on_nomad, name="local") == "local"  # --executor wins over the file
    # a run the local executor recorded for the file (its supervisor's state file) wins over
    # the default and the deploy section (`pipeline run` then `status`), not over --executor
    run_dir = file.parent / ".pipeline-data" / "runs" / "by-hand"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"job": "by-hand", "status": "running"}))
    assert chosen(plain, default="nomad") == "local"
    assert chosen(on_nomad) == "local"
    assert chosen(on_nomad, name="nomad") == "nomad"
    # a new deployment goes where the file says, whatever ran here before
    found = choose_for_command(on_nomad, catalog, deployed, {}, runs=False)
    assert found is not None
    assert found.name == "nomad"


def test_a_local_deploy_that_does_not_start_in_time_is_one_sentence(
    file: Path, tmp_path: Path
) -> None:
    """`pipeline deploy --executor local` waits for a detached `pipeline run` to say it
    started; one that says nothing within --wait (here held up at interpreter start, as by a
    stalled file system) was an internal error with a TimeoutExpired."""
    held = tmp_path / "held"
    held.mkdir()
    (held / "sitecustomize.py").write_text(
        "import sys, time\nif '--detach' in sys.argv:\n    time.sleep(60)\n"
    )
    env = {**DEAD_NOMAD, "PYTHONPATH": str(held)}
    done = run_pipeline(
        "deploy", str(file), "--executor", "local", "--wait", "1", cwd=file.parent, env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        "error: the local run did not say it started within 5 s: nothing of it runs; deploy "
        "again, with a larger --wait on a busy machine\n"
    )
    assert not (file.parent / "out").exists()  # and nothing ran
