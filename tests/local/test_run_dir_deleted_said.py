"""The run directory of a detached run deleted under it (`rm -rf .pipeline-data/runs/NAME`):
the supervisor stops the tasks and records the run `failed` with why. `pipeline status`, `logs`
and `stop` then said it "ended failed before a supervisor started it" (or, for a file without
a `deploy:` section, showed counters alone and "no local run ... is recorded"), contradicting
the run record and hiding the deleted directory (an outside tester's P7). They say the run
record's reason. Real detached runs, real workers, a real embedded store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_which_run import NO_NOMAD, write_pipeline

from helpers import run_pipeline, wait_for

DELETED = "was deleted while job"


def _removed(directory: Path) -> bool:
    # as `rm -rf` does, again while the supervisor writes its state in it meanwhile
    shutil.rmtree(directory, ignore_errors=True)
    return not directory.exists()


def _last_run(file: Path) -> dict[str, Any]:
    listed = run_pipeline("runs", str(file), "--json", env=NO_NOMAD)
    assert listed.returncode == 0, listed.stderr
    runs: list[dict[str, Any]] = json.loads(listed.stdout)["runs"]
    return runs[-1]


@pytest.mark.parametrize("nomad", [True, False], ids=["deploy-section", "local-only"])
def test_status_logs_and_stop_say_why_the_run_ended(tmp_path: Path, nomad: bool) -> None:
    file = write_pipeline(tmp_path / "gone.pipeline.yaml", "gone", nomad=nomad)
    (tmp_path / "data" / "one.txt").write_text("1")
    started = run_pipeline("run", str(file), "--detach", env=NO_NOMAD)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        out = tmp_path / "results" / f"{file.name}.jsonl"
        wait_for(out.exists, timeout=60, what="the first output")
        wait_for(lambda: _removed(tmp_path / ".pipeline-data" / "runs" / "gone"), timeout=30)
        wait_for(lambda: _last_run(file)["state"] == "failed", timeout=60, what="the run's end")
    finally:
        run_pipeline("stop", str(file), env=NO_NOMAD, timeout=120)
    reason = _last_run(file)["message"]
    assert DELETED in reason, reason

    for command in (("status",), ("logs", "sink"), ("stop",)):
        done = run_pipeline(command[0], str(file), *command[1:], env=NO_NOMAD)
        said = " ".join((done.stdout + done.stderr).split())
        assert "Traceback" not in said
        assert "before a supervisor started it" not in said, (command, said)
        assert "no local run of" not in said or "ended failed" in said, (command, said)
        assert reason in said, (command, said)
    stopped = run_pipeline("stop", str(file), "--json", env=NO_NOMAD)
    assert json.loads(stopped.stdout)["message"] == reason
