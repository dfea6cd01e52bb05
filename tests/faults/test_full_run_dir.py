"""Item 2 of #12, the run directory's side: a disk that fills under a running pipeline's run
directory stops the run in one sentence, and a re-run once there is space again goes on where it
stopped, each file reaching the sink once. Core units only, on a small tmpfs the test makes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from faults_support import (
    core_pipeline,
    env,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

from helpers import PIPELINE


def test_a_full_run_directory_stops_the_run_in_one_sentence_and_a_rerun_completes(
    tmp_path: Path, tmpfs
) -> None:
    fs = tmpfs("2m")
    files, out = tmp_path / "files", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 400)
    # the source watches its folder, so the run is still going when the disk fills, however
    # fast this machine is; the run writes its state at least once a second
    file = core_pipeline(tmp_path, files=files, out=out, watch=True, store=str(tmp_path / "store"))
    run_dir = fs.path / "runs" / "faults"
    proc = subprocess.Popen(
        [PIPELINE, "run", str(file), "--data-dir", str(fs.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: sink_names(out), timeout=60, what="the first outputs")
        fs.fill()
        write_files(files, 400, 450)  # arriving while the run stops, or after
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kill_run(run_dir)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert err.strip().startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert str(fs.path) in err
    assert "is full; free space there and run again" in err
    assert read_state(run_dir) is not None  # the last state written is still whole

    fs.free()
    expected = [f"f{i:05d}.txt" for i in range(450)]
    try:
        again = pipeline("run", str(file), "--data-dir", str(fs.path), "--detach", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        wait_for(lambda: sorted(sink_names(out)) == expected, timeout=120, what="every file")
        stopped = pipeline("stop", str(file), "--data-dir", str(fs.path), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        kill_run(run_dir)
    names = sink_names(out)
    assert sorted(names) == expected
    assert set(names.values()) == {1}
