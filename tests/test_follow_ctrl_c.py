"""Ctrl-C ends `pipeline tail --follow` as it ends every command: the one line `aborted.` and
exit 130, as `pipeline logs --follow` ends. The follow caught the interrupt and exited 0, so a
script that followed a stream until a user stopped it could not tell the stop from the stream
read to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from asapo_pipelines import interrupts

from helpers import PIPELINE, core_pipeline, run_pipeline, wait_for


def test_ctrl_c_ends_tail_follow_with_one_line_and_exit_130(tmp_path: Path) -> None:
    files = tmp_path / "data"
    files.mkdir()
    (files / "a.txt").write_text("first scan\n")
    # a run that goes on: the follow of an ended run ends by itself
    file = core_pipeline(
        tmp_path, files=files, out=tmp_path / "out.jsonl", name="followed", watch=True
    )
    ran = run_pipeline("run", str(file), "--detach", timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    try:
        # the message is there before the follow starts, which then says nothing on stderr
        out = tmp_path / "out.jsonl"
        wait_for(lambda: out.exists() and "a.txt" in out.read_text(), timeout=120, what="output")
        _interrupted_follow(file)
    finally:
        run_pipeline("stop", str(file), timeout=300)


def _interrupted_follow(file: Path) -> None:
    follow = subprocess.Popen(
        [PIPELINE, "tail", str(file), "raw", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the interrupt goes to its group, as a terminal sends it
    )
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()  # following: the run's message is printed
        assert "default#1" in first, first
        time.sleep(0.5)
        assert follow.poll() is None, "the follow ended by itself"
        os.killpg(follow.pid, signal.SIGINT)
        _, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert (follow.returncode, err.strip()) == (interrupts.EXIT_CODE, interrupts.ABORTED), err
