"""`pipeline stop` ends a deployment's run with what its workers did up to their last batch.
The jobs get SIGTERM; each worker finishes its batch, makes it durable, acknowledges it and
publishes its final counts, which the end of the run waits for. Before, the run was ended as
soon as the jobs were cancelled, from the counts published before those last batches: an
outside tester's run said 29 merges for the 30 in the NeXus file (a P65 merge's batch takes a
while). Here the sink is stopped while large files stream in, and the run's count of it must be
the lines it wrote. The core's sink finishes its batch before `stop` reads the counts on this
machine, so this holds on the code before the wait too: it guards the count, not the race. On
a real one-node Slurm."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from slurm_support import executor, run_pipeline, runs_of, wait_until, watching_file

#: more than the sink gets through before it is stopped
FILES = 100_000


def _lines(out: Path) -> int:
    """The sink's whole lines (one being written is not one yet)."""
    try:
        return sum(1 for line in out.read_text().splitlines() if line.endswith("}"))
    except FileNotFoundError:
        return 0


def test_a_stopped_deployments_run_counts_the_workers_last_batches(slurm, workdir):
    file = watching_file(workdir, "final-counts")
    files = workdir / "files"
    executor(file)  # registered, so that a failing test leaves nothing behind
    deployed = run_pipeline("deploy", str(file), env=slurm.env)
    assert deployed.returncode == 0, deployed.stderr
    out = workdir / "results" / "out.jsonl"
    # files keep coming until the stop is done: the sink is mid-stream when its job is cancelled
    done = threading.Event()

    def write() -> None:
        for i in range(FILES):
            if done.is_set():
                return
            # large enough that a batch takes the sink a while to write and make durable
            (files / f"f{i:06d}.txt").write_text(f"file {i}\n" + "x" * 200_000)
            time.sleep(0.002)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until("the sink to write", lambda: _lines(out) >= 200, timeout=120, every=0.05)
        stopped = run_pipeline("stop", str(file), env=slurm.env)
    finally:
        done.set()
        writer.join()
    assert stopped.returncode == 0, stopped.stderr
    written = _lines(out)
    (run,) = runs_of(file, slurm.env)
    assert run["state"] == "stopped"
    assert 200 <= written < FILES  # stopped mid-stream
    assert run["counts"]["sink"]["processed"] == written, (written, run["counts"])
