"""The chaos test of #12: a watch-mode run of 1,000 inputs arriving over time, with random
SIGKILLs of its workers and of its supervisor, and re-runs as an operator does them (sometimes
`pipeline stop` first, sometimes not). At the end every input is in the output exactly once."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
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

N_INPUTS = 1000
BATCHES = 10
CHAOS_SECONDS = 60.0


@pytest.mark.slow
def test_random_sigkills_and_reruns_lose_and_double_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    files.mkdir()
    log: list[str] = [f"seed {seed} (CHAOS_SEED={seed} repeats this run)"]

    def start(how: str) -> None:
        if how == "stop first":
            stopped = pipeline("stop", str(file), cwd=tmp_path)
            assert stopped.returncode in (0, 1), stopped.stderr
        started = pipeline("run", str(file), "--detach", cwd=tmp_path)
        assert started.returncode == 0, "\n".join([*log, started.stderr])
        log.append(f"re-run ({how})")

    def running() -> bool:
        state = read_state(run_dir) or {}
        return bool(state.get("pid")) and alive(state["pid"]) and state["status"] == "running"

    try:
        start("first run")
        written, batch = 0, N_INPUTS // BATCHES
        end = time.monotonic() + CHAOS_SECONDS
        next_batch = time.monotonic()
        while time.monotonic() < end or written < N_INPUTS:
            now = time.monotonic()
            if written < N_INPUTS and now >= next_batch:
                write_files(files, written, written + batch)
                written += batch
                next_batch = now + CHAOS_SECONDS / BATCHES * 0.8
            state = read_state(run_dir) or {}
            if not running():
                # the operator notices the run is gone (killed, or failed after too many kills)
                start(rng.choice(["stop first", "no stop"]))
            elif rng.random() < 0.25:
                supervisor = int(state["pid"])
                os.kill(supervisor, signal.SIGKILL)
                wait_for(
                    lambda pid=supervisor: not alive(pid), timeout=60, what="the supervisor to die"
                )
                log.append("SIGKILL supervisor")
                start(rng.choice(["stop first", "no stop"]))
            else:
                tasks = [u for u in state.get("units", []) if u.get("pid")]
                if tasks:
                    victim = rng.choice(tasks)
                    try:
                        os.killpg(victim["pid"], signal.SIGKILL)
                        log.append(f"SIGKILL {victim['unit']}")
                    except ProcessLookupError:
                        pass
            time.sleep(rng.uniform(0.5, 2.0))

        # calm: one run left alone until every input is through
        if not running():
            start("stop first")
        wait_for(lambda: len(sink_names(out)) >= N_INPUTS, timeout=90, what="\n".join(log))
        stopped = pipeline("stop", str(file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        kill_run(run_dir)
    names = sink_names(out)
    lost = sorted({f"f{i:05d}.txt" for i in range(N_INPUTS)} - set(names))
    doubled = sorted(n for n, count in names.items() if count > 1)
    kills = sum(1 for entry in log if entry.startswith("SIGKILL"))
    assert kills >= 10, "\n".join(log)
    print("\n".join(log))
    assert (lost, doubled) == ([], []), "\n".join(log)
