"""A second `pipeline stop` of a lost run stops nothing: the first one killed the orphaned
workers its supervisor left and named their pids. Before, the second stop repeated that
sentence, naming pids it had not touched this time (dead, or by now another user's process);
now it says the job is not running, as for any stopped run, and signals nobody."""

from __future__ import annotations

from pathlib import Path

from faults_support import alive, lost_run, pipeline


def test_a_second_stop_of_a_lost_run_names_no_pids(tmp_path: Path) -> None:
    with lost_run(tmp_path) as lost:
        file, orphans = lost.file, lost.orphans
        first = pipeline("stop", str(file), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert f"pids {', '.join(map(str, orphans))}" in first.stdout
        assert not any(alive(p) for p in orphans)

        second = pipeline("stop", str(file), cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "job faults is not running (stopped)", second.stdout
        assert not any(str(p) in second.stdout + second.stderr for p in orphans)
