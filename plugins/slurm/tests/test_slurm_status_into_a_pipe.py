"""`pipeline status FILE | head -1` of a Slurm deployment: the reader going away ends the
command quietly, as it does for every core command. Before (an operator's audit), it printed
"error: the executor slurm (asapo-pipelines-slurm) failed to report its status:
BrokenPipeError: [Errno 32] Broken pipe", as if the executor had failed. On a real one-node
Slurm, with a real pipe closed after the first line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from slurm_support import PIPELINE, executor, run_pipeline, wait_until, watching_file


def test_status_into_a_pipe_closed_after_one_line_says_nothing_of_a_failure(slurm, workdir):
    file = watching_file(workdir, "piped", first_file=True)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    wait_until("the sink to write", lambda: (workdir / "results" / "out.jsonl").exists(), 90)
    clean = {k: v for k, v in env.items() if not k.startswith("ASAPO_PIPELINES_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    # `| head -1`: a shell pipeline, so that the closed pipe is a real one
    done = subprocess.run(
        f"{PIPELINE} status {file} | head -1",
        shell=True,
        env={**clean, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.startswith("slurm piped: running"), done.stdout
    assert "failed to report its status" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
