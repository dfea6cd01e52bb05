"""What `pipeline run --detach` and a refused start say carry the data directory the command
was given: the stop command a refusal suggests is copied as it is, and without `--data-dir`
it looks in the default data directory (another run's, or none). A detached run whose units
wait on an external stream says so, as a foreground run does. Real `pipeline` commands, a real
embedded store, real locks and supervisors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_which_run import NO_NOMAD, stopped_after, write_pipeline

from helpers import run_pipeline

__all__ = ["stopped_after"]  # the fixture, used here


def _data_dir(tmp_path: Path) -> Path:
    """A data directory away from the default one, with a space to be quoted."""
    return tmp_path / "beam time" / "data"


def test_a_start_refused_while_another_start_holds_the_run_says_its_data_dir(
    tmp_path: Path,
) -> None:
    """The start that holds the run (`StartLock`, held here as that start holds it) was made
    with --data-dir; `run`, `run --detach` and `reprocess` given it are refused, each told
    the stop command that finds that run."""
    from asapo_pipelines.local.control import StartLock
    from asapo_pipelines.local.target import resolve

    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    data = _data_dir(tmp_path)
    run_dir = resolve(str(file), str(data), None).run_dir
    start = StartLock("fe", run_dir, str(file), str(file))
    try:
        said = {
            args: run_pipeline(*args, env=NO_NOMAD)
            for args in (
                ("run", str(file), "--data-dir", str(data)),
                ("run", str(file), "--detach", "--data-dir", str(data)),
                ("reprocess", str(file), "--from", "r1", "--data-dir", str(data)),
            )
        }
    finally:
        start.release()
    stop = f"pipeline stop {file} --data-dir {shlex.quote(str(data))}"
    for args, refused in said.items():
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert refused.stderr == (
            "error: job fe is already running locally (it is being started: its supervisor "
            f"pid is not known yet); stop it first with `{stop}`\n"
        ), (args, refused.stderr)


def test_a_start_refused_by_a_detached_run_says_its_data_dir(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """A run going on under --data-dir: a second start given it is refused by the run's
    supervisor lock, a supervisor started for it by that lock too (what `run --detach`
    relays), and `run --detach`'s own look before it starts one; each names the stop command
    with the data directory, which stops that run."""
    from asapo_pipelines.local.control import start_detached
    from asapo_pipelines.local.errors import LocalRunError

    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    data = _data_dir(tmp_path)
    stopped_after.append((str(file), "--data-dir", str(data)))
    started = run_pipeline(
        "run", str(file), "--detach", "--json", "--data-dir", str(data), env=NO_NOMAD
    )
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads(started.stdout)
    run_dir = Path(state["run_dir"])
    stop = f"pipeline stop {file} --data-dir {shlex.quote(str(data))}"
    told = (
        f"job fe is already running locally (supervisor pid {state['pid']}); "
        f"stop it first with `{stop}`"
    )
    refused = run_pipeline("run", str(file), "--data-dir", str(data), env=NO_NOMAD)
    assert (refused.returncode, refused.stderr) == (1, f"error: {told}\n"), refused.stdout
    supervisor = subprocess.run(
        [
            *(sys.executable, "-m", "asapo_pipelines.local.supervise", str(run_dir)),
            *("--pipeline-file", str(file), "--data-dir", str(data)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **NO_NOMAD},
        check=False,
    )
    assert supervisor.returncode == 1, supervisor.stdout + supervisor.stderr
    assert supervisor.stdout.splitlines()[-1] == f"error: {told}", supervisor.stdout
    job = json.loads((run_dir / "job.json").read_text())
    with pytest.raises(LocalRunError) as looked:
        start_detached(job, run_dir, pipeline_file=str(file), shown=str(file), data_dir=str(data))
    assert looked.value.message == told
    # the command it names is the one that stops the run
    stopped = run_pipeline(*shlex.split(stop)[1:], env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert json.loads((run_dir / "state.json").read_text())["status"] == "stopped"


def test_a_start_without_a_data_dir_is_told_no_data_dir(tmp_path: Path) -> None:
    """Only the --data-dir the command was given is repeated: a start given none is told the
    plain stop command, as before."""
    from asapo_pipelines.local.control import StartLock
    from asapo_pipelines.local.target import resolve

    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    run_dir = resolve(str(file), None, None).run_dir
    start = StartLock("fe", run_dir, str(file), str(file))
    try:
        refused = run_pipeline("run", str(file), "--detach", env=NO_NOMAD)
    finally:
        start.release()
    assert refused.returncode == 1
    assert refused.stderr.endswith(f"stop it first with `pipeline stop {file}`\n")


def test_a_detached_run_waiting_on_an_external_stream_says_so(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """`pipeline new -u core.identity -u core.jsonl-sink` reads a stream declared external: a
    foreground run says it waits for what another program writes there; `run --detach` said
    nothing of it, and its run looked hung in `pipeline status`. With --json the line goes to
    stderr, stdout holding the JSON document only."""
    made = run_pipeline(
        "new", "feed", "-u", "core.identity", "-u", "core.jsonl-sink", cwd=tmp_path, env=NO_NOMAD
    )
    assert made.returncode == 0, made.stdout + made.stderr
    data = _data_dir(tmp_path)
    where = f"feed.pipeline.yaml --data-dir {shlex.quote(str(data))}"
    waiting = (
        "waiting for messages on external stream identity-input, which another program writes "
        f"(see docs/pipeline-files.md, `streams`); the run goes on until stopped "
        f"(`pipeline stop {where}`)"
    )
    stopped_after.append((str(tmp_path / "feed.pipeline.yaml"), "--data-dir", str(data)))
    args = ("run", "feed.pipeline.yaml", "--detach", "--data-dir", str(data))
    started = run_pipeline(*args, cwd=tmp_path, env=NO_NOMAD)
    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    assert lines[:2] == ["run r1 of pipeline feed starts", waiting], started.stdout
    assert lines[2].startswith("job feed runs in the background"), started.stdout
    stopped = run_pipeline("stop", *shlex.split(where), cwd=tmp_path, env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr

    again = run_pipeline(*args, "--json", cwd=tmp_path, env=NO_NOMAD)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["status"] == "running"
    assert waiting in again.stderr.splitlines(), again.stderr
