"""The workers of a lost run are stopped by the next start even when that run was started with
another `--data-dir`: its session records its run directory, and the start looks there too.

Before, a run started with `--data-dir X` whose supervisor was killed outright left its workers
running, and the next `pipeline run` without `--data-dir` (the run directory beside the file)
resumed the run and started a second generation of the units beside them, reading the same
streams and holding the same sinks; a start refused for a changed configuration did not say
they were still running, nor how to stop them."""

from __future__ import annotations

from pathlib import Path

from faults_support import alive, lost_run, pipeline, sink_names, wait_for, write_files


def test_a_start_stops_the_workers_a_lost_run_left_under_another_data_dir(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    with lost_run(tmp_path, count=50, data_dir=other) as lost:
        file, orphans, lost_dir = lost.file, lost.orphans, lost.run_dir
        # a start refused (a changed configuration) stops nothing, and says how to stop them
        refused = pipeline("run", str(file), "--set", "files.settle_seconds=0.2", cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        error = " ".join(refused.stderr.split())
        assert error.endswith(
            f"; {len(orphans)} tasks of the lost run r1 are still running (pids "
            f"{', '.join(map(str, orphans))}), whose supervisor is gone: `pipeline stop "
            f"{file} --data-dir {other}` stops them, and so does a start with --fresh or --resume"
        ), error
        assert all(alive(p) for p in orphans)

        write_files(lost.files, 50, 100)  # the night goes on while the operator starts it again
        again = pipeline("run", str(file), "--detach", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert not any(alive(p) for p in orphans), "the lost run's workers still run"
        said = " ".join(again.stdout.split())
        assert (
            f"stopped {len(orphans)} tasks left running by the lost run of job faults in "
            f"{lost_dir.resolve()}: the orphaned workers of run r1 "
            f"(pids {', '.join(map(str, orphans))}), whose supervisor (pid {lost.supervisor}) "
            "is gone"
        ) in said, said
        assert "its workers, left running, were stopped by the next start" in said, said

        wait_for(lambda: len(sink_names(lost.out)) >= 100, timeout=120, what="all 100 outputs")
        stopped = pipeline("stop", str(file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    names = sink_names(lost.out)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(100)]
    assert [n for n, c in names.items() if c > 1] == []


def test_a_start_refused_under_a_data_dir_names_the_stop_that_finds_its_lost_workers(
    tmp_path: Path,
) -> None:
    """The lost run was started with `--data-dir X`, and the refused start (a changed
    configuration) was given the same: the stop command it suggests repeats `--data-dir X`.
    Before, it said `pipeline stop FILE`, which looks in the default data directory, where
    no run of the file is recorded."""
    data = tmp_path / "beam time"
    with lost_run(tmp_path, data_dir=data) as lost:
        file, orphans = lost.file, lost.orphans
        refused = pipeline(
            *("run", str(file), "--data-dir", str(data)),
            *("--set", "files.settle_seconds=0.2"),
            cwd=tmp_path,
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        error = " ".join(refused.stderr.split())
        stop = f"pipeline stop {file} --data-dir '{data}'"
        assert error.endswith(
            f"; {len(orphans)} tasks of the lost run r1 are still running (pids "
            f"{', '.join(map(str, orphans))}), whose supervisor is gone: `{stop}` stops them, "
            "and so does a start with --fresh or --resume"
        ), error
        # the command it names is the one that stops them
        stopped = pipeline("stop", str(file), "--data-dir", str(data), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not any(alive(p) for p in orphans)
