"""A supervisor killed outright leaves its workers running; the next `pipeline run` (detached or
not) stops them before it starts its own. Before, a detached run said nothing of it (the
sentence went to the supervisor's log only) and a foreground run named neither the run nor
"orphaned": a night-shift operator could not tell why outputs paused. Now both say it in one
line, naming the run, the pids and the lost supervisor (so does `pipeline deploy --executor
local`), and `pipeline status` says it after."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from faults_support import (
    PIPELINE,
    alive,
    env,
    lose_supervisor,
    lost_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)


def told(orphans: list[int], supervisor: int, run: str) -> str:
    return (
        f"stopped {len(orphans)} tasks left running by the lost run of job faults: the orphaned "
        f"workers of run {run} (pids {', '.join(map(str, orphans))}), whose supervisor "
        f"(pid {supervisor}) is gone"
    )


def test_run_says_which_orphaned_workers_of_which_run_it_stopped(tmp_path: Path) -> None:
    foreground: subprocess.Popen[str] | None = None
    with lost_run(tmp_path, count=40) as first:
        file, files, out, run_dir = first.file, first.files, first.out, first.run_dir
        supervisor, orphans = first.supervisor, first.orphans
        try:
            assert len(orphans) == 3  # files, copy, sink

            # detached: the sentence before the "runs in the background" line
            again = pipeline("run", str(file), "--detach", cwd=tmp_path)
            assert again.returncode == 0, again.stderr
            lines = again.stdout.splitlines()
            # the session whose supervisor was lost: said, with when (`test_last_session_end`)
            lost = "(unchanged); its last session was lost at "
            assert lines[0].startswith(f"resuming run r1 of pipeline faults {lost}"), lines[0]
            assert lines[1] == told(orphans, supervisor, "r1")
            assert lines[2].startswith("job faults runs in the background")
            assert not any(alive(p) for p in orphans), "a worker of the lost session still runs"
            # they reach the new supervisor through the run directory, taken there: its
            # command line, which `ps` shows, carried them as JSON with paths and pids
            pid = read_state(run_dir)["pid"]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert not any(b"orphans" in arg or arg.startswith(b"{") for arg in cmdline), cmdline
            assert not (run_dir / "stopped-orphans.json").exists()

            # status right after: the new run runs, and why the outputs paused is still said
            status = pipeline("status", str(file), cwd=tmp_path)
            assert status.returncode == 0, status.stderr
            assert "running" in status.stdout.splitlines()[0]
            assert told(orphans, supervisor, "r1") in status.stdout.splitlines()
            as_json = json.loads(pipeline("status", str(file), "--json", cwd=tmp_path).stdout)
            assert as_json["status"] == "running"
            assert as_json["run"] == "r1"
            assert as_json["stopped_orphans"]["pids"] == orphans
            assert as_json["stopped_orphans"]["run"] == "r1"

            # foreground, into a new run: the same sentence names the lost run, not the new one
            write_files(files, 40, 60)
            wait_for(lambda: len(sink_names(out)) >= 60, timeout=60, what="the new outputs")
            supervisor, orphans = lose_supervisor(run_dir)
            assert len(orphans) == 3  # files, copy, sink
            foreground = subprocess.Popen(
                [PIPELINE, "run", str(file), "--fresh"],
                cwd=tmp_path,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            said: list[str] = []
            reader = threading.Thread(target=_read_lines, args=(foreground, said), daemon=True)
            reader.start()
            sentence = told(orphans, supervisor, "r1")
            wait_for(lambda: sentence in said, timeout=60, what=f"{sentence!r} in {said}")
            assert said[0] == "run r2 of pipeline faults starts"
            assert not any(alive(p) for p in orphans), "a worker of the lost session still runs"
            wait_for(
                lambda: _running(read_state(run_dir), foreground.pid),
                timeout=60,
                what="the new run",
            )
            foreground.send_signal(signal.SIGINT)
            assert foreground.wait(timeout=60) == 130
            reader.join(timeout=10)
            assert said.count(sentence) == 1, said

            # `pipeline deploy` with the local executor is `run --detach`: it says it alike
            detached = pipeline("run", str(file), "--detach", cwd=tmp_path)
            assert detached.returncode == 0, detached.stderr
            run = re.search(
                r"\brun (r\d+) ", detached.stdout
            )  # "run r3 ... starts", "resuming run r3"
            assert run, detached.stdout
            supervisor, orphans = lose_supervisor(run_dir)
            assert len(orphans) == 3  # files, copy, sink
            deployed = pipeline("deploy", str(file), "--executor", "local", cwd=tmp_path)
            assert deployed.returncode == 0, deployed.stderr
            lines = deployed.stdout.splitlines()
            assert lines[0].startswith(f"resuming run {run[1]} of pipeline faults {lost}"), lines
            assert lines[1] == told(orphans, supervisor, run[1])
            assert not any(alive(p) for p in orphans), "a worker of the lost session still runs"
            assert pipeline("stop", str(file), cwd=tmp_path).returncode == 0
        finally:
            if foreground is not None and foreground.poll() is None:
                foreground.kill()
                foreground.wait()


def _read_lines(proc: subprocess.Popen[str], said: list[str]) -> None:
    """Each line the command prints, as it prints it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        said.append(line.rstrip("\n"))


def _running(state: dict[str, Any] | None, supervisor: int) -> bool:
    return bool(state) and state["pid"] == supervisor and state["status"] == "running"


def test_a_start_refused_for_a_changed_configuration_names_the_workers_it_leaves(
    tmp_path: Path,
) -> None:
    """A start refused because the configuration changed stops nothing and records nothing
    (docs/runs.md: refused before anything is recorded), so the lost run's workers go on: the
    refusal says so, with their pids and how to stop them. Before, it named none of them (only
    `pipeline status` did), and it had ended their session `lost` from the counts of workers
    that were still running."""
    with lost_run(tmp_path) as lost:
        file, orphans = lost.file, lost.orphans

        refused = pipeline("run", str(file), "--set", "files.settle_seconds=0.2", cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        error = refused.stderr.strip()
        assert error.startswith("error: the configuration changed since run r1: "), error
        assert "files (settle_seconds 0.1 -> 0.2)" in error
        assert error.endswith(
            f"; {len(orphans)} tasks of the lost run r1 are still running (pids "
            f"{', '.join(map(str, orphans))}), whose supervisor is gone: `pipeline stop {file}` "
            "stops them, and so does a start with --fresh or --resume"
        ), error
        assert "\n" not in error
        assert all(alive(p) for p in orphans), "a refused start stopped the lost run's workers"
        both = pipeline("run", str(file), "--fresh", "--resume", cwd=tmp_path)
        assert both.returncode == 1, both.stdout + both.stderr
        assert both.stderr.strip().startswith(
            f"error: give --fresh or --resume, not both; {len(orphans)} tasks of the lost run r1 "
        ), both.stderr
        assert all(alive(p) for p in orphans), "a refused start stopped the lost run's workers"
        listed = json.loads(pipeline("runs", str(file), "--json", cwd=tmp_path).stdout)
        sessions = listed["runs"][0]["session_list"]
        assert [s["state"] for s in sessions] == ["running"], sessions  # nothing recorded

        stopped = pipeline("stop", str(file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert f"pids {', '.join(map(str, orphans))}" in stopped.stdout
        assert not any(alive(p) for p in orphans)
