"""The store remounted read-only under a detached run (a bind mount made read-only, as an
operator protecting a beamtime's data does): the supervisor cannot write its state file or the
run's end into the store, and says why in its log, which it opened before. `pipeline status`
said `lost` (exit 0 once the mount was writable again) and the next start recorded the session
as lost, "killed, or its machine stopped" (an outside tester); it is `failed`, with that
sentence, and exit 1, as for a full disk. Needs the right to mount (root, as in CI)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from faults_support import alive, kill_run, pipeline, read_state, sink_names, wait_for, write_files
from test_full_disk_status import first_end, runs_of, watching_pipeline

READ_ONLY = "Read-only file system"


def bind_read_only(path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("remounting a folder read-only needs `mount`")
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this user may not bind-mount ({done.stderr.decode().strip()}); CI is root")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def test_a_run_whose_store_was_remounted_read_only_failed_with_why(tmp_path: Path) -> None:
    files, out, store = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl", tmp_path / "store"
    write_files(files, 0, 5)
    file = watching_pipeline(tmp_path, files=files, out=out, store=store)
    run_dir = store / "runs" / "diskfull"
    mounted = False
    try:
        started = pipeline("run", "--detach", str(file), cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: len(sink_names(out)) >= 5, timeout=60, what="the first outputs")
        supervisor = read_state(run_dir)["pid"]
        bind_read_only(store)
        mounted = True
        write_files(files, 5, 10)  # work for the run, whose store takes no more
        wait_for(lambda: not alive(supervisor), timeout=90, what="the supervisor to exit")

        shown = pipeline("status", str(file), cwd=tmp_path)
        text = " ".join(shown.stdout.split())
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "Traceback" not in shown.stdout + shown.stderr
        assert "failed" in text, text
        assert READ_ONLY in text, text
        assert "lost" not in text

        subprocess.run(["umount", str(store)], check=True)
        mounted = False
        again = pipeline("status", str(file), cwd=tmp_path)  # writable again: still failed
        assert again.returncode == 1, again.stdout + again.stderr
        said = pipeline("run", "--detach", str(file), cwd=tmp_path)
        assert said.returncode == 0, said.stderr
        resumed = " ".join(said.stdout.split())
        assert "its last session failed at" in resumed, resumed
        assert READ_ONLY in resumed, resumed
        stopped = pipeline("stop", str(file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(store)], check=False)
        kill_run(run_dir)
    session = runs_of(file)["r1"]["session_list"][0]
    assert session["state"] == "failed", session
    assert READ_ONLY in session["message"]
    assert first_end(store, "r1")["state"] == "failed"
