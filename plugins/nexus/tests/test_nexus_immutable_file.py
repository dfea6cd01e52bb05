"""A NeXus file made read-only mid-run (`chattr +i`, which stops root too): the run fails with
one sentence naming the file and the cause, the writer's log (`pipeline logs FILE writer`)
says the same without a traceback (HDF5's failed writes printed one per released object, then
closing the file crashed the writer before it said why), and a resume after `chattr -i`
writes every scan."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from nexus_cli import PIPELINE_BIN, WATCHING_WRITER, pipeline_env
from nexus_cli import pipeline as _pipeline
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import KEY_ATTR

from leaked_processes import stop_run

pytest.importorskip("asapo_pipelines_xas")

PIPELINE_FILE = WATCHING_WRITER.format(name="nexus-immutable")


def _entries(path: Path) -> int:
    """Complete entries (those with their key, which the writer sets last); 0 before the file
    exists or while it cannot be read yet."""
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return sum(1 for g in f.values() if g is not None and KEY_ATTR in g.attrs)
    except (OSError, KeyError):
        return 0


def _chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True, check=False)


def _immutable_or_skip(path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = _chattr("+i", path)
    if done.returncode != 0:  # not root, or a file system without attributes (tmpfs, NFS)
        pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")


def _wait_for(predicate, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_immutable_file_stops_the_run_with_one_sentence_and_a_resume_writes_all(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "data" / P65_SCANS[0])
    (tmp_path / "p.pipeline.yaml").write_text(PIPELINE_FILE)
    nxs = tmp_path / "results" / "scans.nxs"
    run = subprocess.Popen(
        [PIPELINE_BIN, "run", "p.pipeline.yaml"],
        cwd=tmp_path,
        env=pipeline_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _entries(nxs) == 1, run)
        _immutable_or_skip(nxs)
        try:
            # a new scan while the file is immutable: the writer fails on its entry
            shutil.copy(DATA / P65_SCANS[1], tmp_path / "data" / P65_SCANS[1])
            out, err = run.communicate(timeout=300)
        finally:
            _chattr("-i", nxs)
    finally:
        stop_run(run, tmp_path / "p.pipeline.yaml", env=pipeline_env(tmp_path), cwd=tmp_path)

    cause = "the file is read-only (immutable: chattr +i)"
    assert run.returncode != 0, out + err
    # the restarted writer cannot open the file either: the run fails with that sentence
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert f"cannot open {nxs} for writing: {cause}" in err, err
    assert "Traceback" not in out + err

    logs = _pipeline(tmp_path, "logs", "p.pipeline.yaml", "writer")
    assert logs.returncode == 0, logs.stderr
    log = logs.stdout + logs.stderr
    assert f"nexus.writer cannot write {nxs}: {cause}" in log, log
    assert f"chattr -i {nxs}" in log, log
    assert "Traceback" not in log, log
    assert "SIGSEGV" not in _pipeline(tmp_path, "status", "p.pipeline.yaml").stdout

    # writable again: a resume that reads the folder once writes every scan in it
    done = _pipeline(tmp_path, "run", "--resume", "--set", "scans.watch=false", "p.pipeline.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _entries(nxs) == len(list((tmp_path / "data").glob("*.xdi")))
