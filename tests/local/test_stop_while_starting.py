"""`pipeline stop FILE` while `pipeline run FILE --detach` is still starting the run stops that
run. It used to go to Nomad ("cannot reach Nomad", exit 1) until the supervisor had written its
state, and the run went on. Real `pipeline` commands, a real embedded store, real workers; the
supervisor is held at interpreter start (a `sitecustomize` on its PYTHONPATH) so that the stop
lands while the run is recorded and its supervisor is not running yet, as on a loaded machine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_which_run import NO_NOMAD, runs_of, write_pipeline

from helpers import CACHE_DIR, PIPELINE, alive, read_state, run_pipeline, wait_for

#: how many times each kind of file is started and stopped at once
TRIES = 3
#: seconds the supervisor is held before it starts: the stop's own start-up (catalog, file)
#: fits in it on an idle machine, which is what makes the old code's stop go to Nomad
HOLD = 3


def _held_supervisor(tmp_path: Path) -> str:
    """A PYTHONPATH whose `sitecustomize` holds the run's supervisor at interpreter start."""
    held = tmp_path / "held"
    held.mkdir()
    (held / "sitecustomize.py").write_text(
        "import time\n"
        "with open('/proc/self/cmdline', 'rb') as fh:\n"
        "    if b'asapo_pipelines.local.supervise' in fh.read():\n"
        f"        time.sleep({HOLD})\n"
    )
    return os.pathsep.join(filter(None, [str(held), os.environ.get("PYTHONPATH")]))


def _workers_of(state: dict[str, Any]) -> list[int]:
    """The processes still running whose environment names an allocation of the run (the
    state the supervisor records lists them): a worker that outlived the stop."""
    allocs = {f"NOMAD_ALLOC_ID={u['alloc_id']}".encode() for u in state.get("units") or []}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if environ & allocs:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("attempt", range(TRIES))
@pytest.mark.parametrize("deploy", [True, False], ids=["deploy-nomad", "no-deploy"])
def test_stop_during_a_detached_start_stops_the_run(
    tmp_path: Path, deploy: bool, attempt: int
) -> None:
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe", nomad=deploy)
    (tmp_path / "data" / "scan.txt").write_text(f"attempt {attempt}\n")
    run_dir = tmp_path / ".pipeline-data" / "runs" / "fe"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(NO_NOMAD, ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, PYTHONPATH=_held_supervisor(tmp_path))
    start = subprocess.Popen(
        [PIPELINE, "run", str(file), "--detach", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # the run is recorded and its supervisor is being started, held
        wait_for(lambda: (run_dir / "job.json").exists(), 60, "the run's job to be written")
        stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    finally:
        out, err = start.communicate(timeout=120)
        if (read_state(run_dir) or {}).get("status") == "running":  # the stop missed it
            run_pipeline("stop", str(file), "--executor", "local", env=NO_NOMAD)
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode == 0, said
    assert "Nomad" not in said
    assert start.returncode == 0, err.decode()
    supervisor = json.loads(out)["pid"]
    state = read_state(run_dir) or {}
    assert state.get("pid") == supervisor, state
    assert state.get("status") == "stopped", state
    assert not alive(supervisor)
    assert _workers_of(state) == []
    assert runs_of(file)["r1"]["state"] == "stopped"


def test_stop_of_a_file_without_deploy_section_and_no_run_never_asks_nomad(
    tmp_path: Path,
) -> None:
    """Nothing runs and the file names no cluster: `stop` says so, not "cannot reach Nomad"."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0, said
    assert "Nomad" not in said
    assert stopped.stderr.strip() == (
        f"error: no local run of {file} is recorded; start one with `pipeline run`"
    )
