"""Which local run `pipeline status` and `stop` act on, and what status says of it: never
another file's run, never a cluster for a run that `pipeline run` recorded here, the job's
type as the run's own configuration makes it, and tasks as they really are after their
supervisor was killed. Real `pipeline` commands, a real embedded store, real workers."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import PIPELINE, alive, read_state, run_pipeline, wait_for
from leaked_processes import stop_run

for module in ("asapo_pipelines.pipeline", "asapo_pipelines.worker", "asapo_pipelines.transport"):
    pytest.importorskip(module)

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


def write_pipeline(
    path: Path, name: str, *, watch: bool = True, transport: Any = None, nomad: bool = False
) -> Path:
    """A files -> jsonl-sink pipeline reading `data/` next to it (JSON is YAML)."""
    (path.parent / "data").mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"pipeline": name}
    if transport is not None:
        doc["transport"] = transport
    doc["units"] = {
        "files": {
            "unit": "core.files",
            "params": {"directory": "data", "watch": watch},
            "outputs": {"files": "files"},
        },
        "sink": {
            "unit": "core.jsonl-sink",
            "params": {"path": f"results/{path.name}.jsonl"},
            "inputs": {"messages": "files"},
        },
    }
    if nomad:
        doc["deploy"] = {"nomad": {"datacenters": ["*"], "driver": "raw_exec"}}
    path.write_text(json.dumps(doc, indent=1))
    return path


@pytest.fixture
def stopped_after() -> Iterator[list[tuple[str, ...]]]:
    """`pipeline stop` arguments to run at the end whatever happened, so no run outlives it."""
    stops: list[tuple[str, ...]] = []
    yield stops
    for args in stops:
        run_pipeline("stop", *args, env=NO_NOMAD, timeout=120)


def detach(file: Path, *extra: str) -> dict[str, Any]:
    done = run_pipeline("run", str(file), "--detach", "--json", *extra, env=NO_NOMAD)
    assert done.returncode == 0, done.stdout + done.stderr
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def runs_of(file: Path) -> dict[str, dict[str, Any]]:
    done = run_pipeline("runs", str(file), "--json", env=NO_NOMAD)
    assert done.returncode == 0, done.stderr
    return {r["id"]: r for r in json.loads(done.stdout)["runs"]}


def task_pids(run_dir: Path) -> dict[str, int]:
    """unit -> pid of its running task, once every task of the run has one."""
    units = (read_state(run_dir) or {}).get("units") or []
    pids = {u["group"]: u["pid"] for u in units if u.get("pid")}
    return pids if units and len(pids) == len(units) else {}


def test_two_files_sharing_a_data_dir_and_a_pipeline_name_run_side_by_side(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """Two beamlines' files with one `pipeline:` name and one --data-dir: each has its own
    store, so they are two pipelines. `status` and `stop` of the one never act on the other's
    run, and both run at once, each in a run directory of its own."""
    shared = tmp_path / "runs-here"
    first = write_pipeline(tmp_path / "p21" / "scan.pipeline.yaml", "scan")
    second = write_pipeline(tmp_path / "p65" / "scan.pipeline.yaml", "scan")
    state = detach(first, "--data-dir", str(shared))
    stopped_after.append((str(first), "--data-dir", str(shared)))
    pids = wait_for(lambda: task_pids(Path(state["run_dir"])), 60, "the first file's tasks")
    shown = run_pipeline("status", str(second), "--data-dir", str(shared), env=NO_NOMAD)
    assert not {str(p) for p in pids.values()} & set(shown.stdout.split()), shown.stdout
    run_pipeline("stop", str(second), "--data-dir", str(shared), env=NO_NOMAD)
    assert alive(state["pid"]), "stopping the other file's pipeline stopped this one"
    other = detach(second, "--data-dir", str(shared))
    stopped_after.append((str(second), "--data-dir", str(shared)))
    assert other["run_dir"] != state["run_dir"]
    assert Path(other["run_dir"]).parent == shared / "runs"
    stopped = run_pipeline("stop", str(second), "--data-dir", str(shared), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not alive(other["pid"])
    assert alive(state["pid"])
    assert runs_of(first)["r1"]["state"] == "running"


def _signalled_while_it_announces(file: Path, sig: int) -> None:
    """`pipeline run FILE` sent `sig` after it recorded its run and before it could start a
    supervisor: its stdout is a full pipe, so it blocks printing "run r1 ... starts", the line
    it prints right after the record."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, 0)  # the child's write blocks, it does not fail
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    proc = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        stdout=write_end,
        stderr=subprocess.DEVNULL,
        env={**env, **NO_NOMAD},
        cwd=file.parent,
    )
    os.close(write_end)
    try:
        wait_for(lambda: "r1" in runs_of(file), 60, "run r1 to be recorded")
        proc.send_signal(sig)
        with os.fdopen(read_end, "rb") as pipe:  # what it still prints as it ends
            pipe.read()
        proc.wait(60)
    finally:
        stop_run(proc, file, env={**env, **NO_NOMAD}, cwd=file.parent)


def test_a_run_whose_pipeline_run_died_before_its_supervisor_is_said_and_stopped(
    tmp_path: Path,
) -> None:
    """The store says r1 runs, but no supervisor ever ran it. `status` and `stop` say so in
    one sentence instead of asking the Nomad cluster of the file's deploy section; `stop`
    ends the run, after which `prune` drops it."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe", nomad=True)
    _signalled_while_it_announces(file, signal.SIGKILL)
    assert runs_of(file)["r1"]["state"] == "running"
    assert not (tmp_path / ".pipeline-data" / "runs" / "fe" / "state.json").exists()
    for command in ("status", "logs"):
        args = (command, str(file)) + (("sink",) if command == "logs" else ())
        done = run_pipeline(*args, env=NO_NOMAD)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "Nomad" not in lines[0]
        assert (
            "run r1 of pipeline fe is recorded as running, but no supervisor runs it" in (lines[0])
        )
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "run r1 of pipeline fe ended as stopped: no supervisor ran it" in stopped.stdout
    assert runs_of(file)["r1"]["state"] == "stopped"
    pruned = run_pipeline("prune", str(file), "--run", "r1", env=NO_NOMAD)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr


def test_a_run_stopped_before_its_supervisor_started_is_never_handed_to_the_cluster(
    tmp_path: Path,
) -> None:
    """SIGTERM to `pipeline run` right after "run r1 ... starts": no supervisor ever ran r1.
    `status` and `stop` of the file, whose deploy section names Nomad, say what became of
    that local run instead of asking the cluster, and r1 is not left running."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe", nomad=True)
    _signalled_while_it_announces(file, signal.SIGTERM)
    assert not (tmp_path / ".pipeline-data" / "runs" / "fe" / "state.json").exists()
    shown = run_pipeline("status", str(file), env=NO_NOMAD)
    assert shown.returncode != 0, shown.stdout
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1, shown.stderr
    assert "Nomad" not in lines[0]
    assert "run, r1, ended" in lines[0] or "run r1 of pipeline fe is recorded" in lines[0]
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Nomad" not in stopped.stdout + stopped.stderr
    assert runs_of(file)["r1"]["state"] != "running"


def test_a_source_set_to_watch_on_the_command_line_makes_a_service(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """`--set files.watch=true` makes the run continuous: its job is a service (restarted
    when a task exits, never "complete"), as `watch: true` in the file makes it."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe", watch=False)
    state = detach(file, "--set", "files.watch=true")
    stopped_after.append((str(file),))
    assert state["type"] == "service"
    run_dir = Path(state["run_dir"])
    assert json.loads((run_dir / "job.json").read_text())["Job"]["Type"] == "service"
    shown = run_pipeline("status", str(file), env=NO_NOMAD)
    assert shown.returncode == 0, shown.stderr
    assert "job fe (service): running" in shown.stdout, shown.stdout


def test_status_after_the_supervisor_was_killed_shows_the_tasks_as_they_are(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """The supervisor SIGKILLed, then one of its tasks gone too: status says the supervisor
    is gone, and the gone task is not running (no pid); the other one still runs. `stop`
    stops it and ends the run."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    state = detach(file)
    stopped_after.append((str(file),))
    run_dir = Path(state["run_dir"])
    pids = wait_for(lambda: task_pids(run_dir), 60, "both tasks to run")
    os.kill(state["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(state["pid"]), 30, "the supervisor to die")
    os.killpg(pids["files"], signal.SIGKILL)
    wait_for(lambda: not alive(pids["files"]), 30, "the files task to die")
    done = run_pipeline("status", str(file), "--json", env=NO_NOMAD)
    assert done.returncode == 1, done.stderr  # lost: an operator must act (`status --help`)
    shown = json.loads(done.stdout)
    assert shown["status"] == "lost"
    units = {u["group"]: u for u in shown["units"]}
    assert units["files"]["state"] == "exited"
    assert units["files"]["pid"] is None
    assert units["sink"]["state"] == "running"
    assert units["sink"]["pid"] == pids["sink"]
    assert f"the supervisor (pid {state['pid']}) is gone" in shown["message"]
    text = run_pipeline("status", str(file), env=NO_NOMAD).stdout
    assert str(pids["files"]) not in text, text
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pids["sink"])
    assert runs_of(file)["r1"]["state"] == "stopped"


def test_status_and_stop_find_a_run_started_with_data_dir(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """`pipeline run FILE --data-dir DIR --detach`, then `status FILE` and `stop FILE` without
    --data-dir: the run's record names its run directory, so they find it."""
    data_dir = tmp_path / "elsewhere"
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe", nomad=True)
    state = detach(file, "--data-dir", str(data_dir))
    stopped_after.append((str(file), "--data-dir", str(data_dir)))
    pids = wait_for(lambda: task_pids(Path(state["run_dir"])), 60, "both tasks to run")
    if not _recorded_run_dir(tmp_path / ".pipeline-data", "fe"):
        pytest.skip("`pipeline run` does not record its run directory in the run (session.py)")
    shown = run_pipeline("status", str(file), env=NO_NOMAD)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert str(pids["sink"]) in shown.stdout, shown.stdout
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not alive(state["pid"])
    assert runs_of(file)["r1"]["state"] == "stopped"


def _recorded_run_dir(store: Path, pipeline: str) -> str | None:
    """The run directory the latest run's session recorded (`RunStore`), if any."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    with open_transport({"embedded": {"path": str(store), "create": False}}) as transport:
        latest = RunStore(transport, pipeline).latest()
    return None if latest is None else latest.session.get("run_dir")


def test_a_run_whose_file_no_longer_validates_is_still_shown_and_stopped(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """A plugin the file uses was uninstalled (here: the file now names a unit nobody
    provides) while its job runs: `status` and `stop` refused with the file's P201, and the job
    went on running. They act on the run started from the file, saying why."""
    file = write_pipeline(tmp_path / "gone.pipeline.yaml", "gone")
    state = detach(file)
    stopped_after.append((str(file),))
    pids = wait_for(lambda: task_pids(Path(state["run_dir"])), 60, "both tasks to run")
    file.write_text(file.read_text().replace("core.jsonl-sink", "acme.uninstalled-sink"))
    assert run_pipeline("validate", str(file)).returncode != 0  # the file is broken now

    shown = run_pipeline("status", str(file), env=NO_NOMAD)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert str(pids["sink"]) in shown.stdout, shown.stdout
    assert "does not validate now" in shown.stderr
    assert "P201" in shown.stderr
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not alive(state["pid"])
    assert not alive(pids["sink"])
