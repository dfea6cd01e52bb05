"""A session whose supervisor was killed outright is ended by the next `pipeline run`: its
end is recorded at the run directory's last sign of life, not at that next start, with the
sentence that says it was lost; and the resume says so. Real `pipeline` commands, a real
embedded store, real workers killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from faults_support import (
    alive,
    core_pipeline,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

#: how long the operator takes to notice and start again: the lost session's end must not
#: be taken for that moment
NOTICED_AFTER = 4.0


def test_a_killed_session_ends_when_it_was_killed_and_the_resume_says_so(
    tmp_path: Path,
) -> None:
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 20)
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    try:
        assert pipeline("run", str(file), "--detach", cwd=tmp_path).returncode == 0
        wait_for(lambda: len(sink_names(out)) >= 20, timeout=60, what="the first outputs")
        state = read_state(run_dir)
        assert state is not None
        tasks = [u["pid"] for u in state["units"] if u["pid"]]
        os.kill(state["pid"], signal.SIGKILL)
        for pid in tasks:  # each task leads its own process group
            os.killpg(pid, signal.SIGKILL)
        pids = [state["pid"], *tasks]
        killed = time.time()
        wait_for(lambda: not any(alive(p) for p in pids), timeout=60, what="all to die")
        time.sleep(NOTICED_AFTER)
        again = pipeline("run", str(file), "--detach", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert pipeline("stop", str(file), cwd=tmp_path).returncode == 0
    finally:
        kill_run(run_dir)
    listed = pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    first, second = json.loads(listed.stdout)["runs"][0]["session_list"][:2]
    assert first["state"] == "lost"
    assert first["ended"] <= killed + 0.5, (first["ended"], killed)
    assert first["ended"] < second["began"] - NOTICED_AFTER / 2
    assert first["message"].startswith("its supervisor was lost (killed")
    clock = time.strftime("%H:%M:%S", time.localtime(first["ended"]))
    assert (
        f"resuming run r1 of pipeline faults (unchanged); its last session was lost at {clock}: "
        "its supervisor was lost (killed" in again.stdout
    ), again.stdout
