"""The NeXus file removed or replaced while a run writes it. The writer went on writing into
the open, unlinked file and acknowledged its inputs: those entries were in no file anyone could
open, and the run reported them written. Now it stops before the next entry (or the next
acknowledgement) with one sentence naming the file and what happened, the run fails with it,
and a resume writes every entry of the run into the file at the path, from the run's inputs
in the store."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from nexus_cli import PIPELINE_BIN, WATCHING_WRITER, pipeline_env, source_files, writer_log
from nexus_cli import pipeline as _pipeline
from nexus_testdata import DATA, P65_SCANS

from leaked_processes import stop_run

pytest.importorskip("asapo_pipelines_xas")

PIPELINE_FILE = WATCHING_WRITER.format(name="nexus-gone")
#: scans that arrive after the file was taken away (the first is written before)
LATER_SCANS = (P65_SCANS[1], "fe_metal_rt.xdi")


def _run_and_take_the_file_away(work: Path, take_away) -> tuple[int, str, str]:
    """A watching run that writes one scan, then `take_away(file)` and two more scans: the
    run's exit status, stdout and stderr."""
    (work / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], work / "data" / P65_SCANS[0])
    (work / "p.pipeline.yaml").write_text(PIPELINE_FILE)
    nxs = work / "results" / "scans.nxs"
    run = subprocess.Popen(
        [PIPELINE_BIN, "run", "p.pipeline.yaml"],
        cwd=work,
        env=pipeline_env(work),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(source_files(nxs)) < 1:
            assert run.poll() is None, f"the run ended early: {run.communicate()}"
            assert time.monotonic() < deadline, "timed out waiting for the first entry"
            time.sleep(0.2)
        take_away(nxs)
        for name in LATER_SCANS:
            shutil.copy(DATA / name, work / "data" / name)
        try:
            out, err = run.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            out, err = stop_run(run, work / "p.pipeline.yaml", env=pipeline_env(work), cwd=work)
            logs = _pipeline(work, "logs", "p.pipeline.yaml", "writer")
            pytest.fail(
                "the run went on writing after its file was taken away:\n"
                + out[-1500:]
                + logs.stdout[-1500:]
            )
    finally:
        stop_run(run, work / "p.pipeline.yaml", env=pipeline_env(work), cwd=work)
    return run.returncode, out, err


def _resume(work: Path) -> None:
    """Resume the run reading the folder once; it ends when every scan is written."""
    done = _pipeline(work, "run", "--resume", "--set", "scans.watch=false", "p.pipeline.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_removed_file_stops_the_run_and_a_resume_writes_every_entry_again(tmp_path):
    code, out, err = _run_and_take_the_file_away(tmp_path, lambda nxs: nxs.unlink())

    nxs = tmp_path / "results" / "scans.nxs"
    pipeline_file = tmp_path / "p.pipeline.yaml"
    resume = f"`pipeline run --resume {pipeline_file}` writes every entry of run r1 into a new file"
    assert code != 0, out + err
    # the restarted writer finds the file gone and the run fails with one sentence
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert f"nexus.writer stops: {nxs} was removed or moved away while run r1 wrote it" in err
    assert resume in err, err
    assert "Traceback" not in out + err

    # the writer that found it says exactly what happened, before the next entry
    log = writer_log(tmp_path)
    assert (
        f"nexus.writer stops: {nxs} was removed while run r1 wrote it; the 1 entry it held is "
        "in no file any more, and nothing more is acknowledged; " + resume
    ) in log, log
    assert "Traceback" not in log, log
    assert not nxs.exists()  # the restart did not put an empty file in its place

    _resume(tmp_path)
    scans = sorted(p.name for p in (tmp_path / "data").glob("*.xdi"))
    assert sorted(source_files(nxs)) == scans


def test_a_replaced_file_is_left_as_it_is_and_a_resume_writes_every_entry(tmp_path):
    def replace(nxs: Path) -> None:
        # an analyst's file moved onto the path (`mv other.nxs results/scans.nxs`)
        other = nxs.with_name("other.nxs")
        with h5py.File(other, "w") as f:
            f.create_group("analysis").attrs["note"] = "not the pipeline's"
        os.replace(other, nxs)

    code, out, err = _run_and_take_the_file_away(tmp_path, replace)

    nxs = tmp_path / "results" / "scans.nxs"
    assert code != 0, out + err
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    said = f"nexus.writer stops: {nxs} was replaced by another file while run r1 wrote it"
    assert said in err, err
    assert f"move the file now at {nxs} aside unless it is meant to take them" in err, err
    assert "Traceback" not in out + err
    log = writer_log(tmp_path)
    assert f"{said}; the 1 entry it held is in no file any more" in log, log
    assert "Traceback" not in log, log
    # the file put there is not written into
    with h5py.File(nxs, "r") as f:
        assert list(f) == ["analysis"]

    nxs.rename(nxs.with_name("analysis.nxs"))
    _resume(tmp_path)
    scans = sorted(p.name for p in (tmp_path / "data").glob("*.xdi"))
    assert sorted(source_files(nxs)) == scans


def test_a_file_emptied_in_place_stops_the_run_and_a_resume_fills_it_again(tmp_path):
    """`: > results/scans.nxs` keeps the file (same inode): HDF5 went on writing its next
    entries over the emptied file, the run said "entries_written 3" and the file could not be
    read any more."""
    code, out, err = _run_and_take_the_file_away(tmp_path, lambda nxs: nxs.write_bytes(b""))

    nxs = tmp_path / "results" / "scans.nxs"
    assert code != 0, out + err
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert f"nexus.writer stops: {nxs} was emptied while run r1 wrote it" in err, err
    assert f"move the file now at {nxs} aside unless it is meant to take them" in err, err
    assert "Traceback" not in out + err
    log = writer_log(tmp_path)
    assert (
        f"nexus.writer stops: {nxs} was changed in place by another program (emptied, or "
        "another file written or copied onto it) while run r1 wrote it; the 1 entry it held "
        "may be gone from it, and nothing more is acknowledged"
    ) in log, log
    assert "Traceback" not in log, log
    assert nxs.stat().st_size == 0  # nothing more was written into it, not even on closing

    # the emptied file is meant to take them: the resume writes every entry into it
    _resume(tmp_path)
    scans = sorted(p.name for p in (tmp_path / "data").glob("*.xdi"))
    assert sorted(source_files(nxs)) == scans


def test_a_file_rewritten_by_h5py_is_left_as_written_and_a_resume_says_to_move_it(tmp_path):
    """A notebook's `h5py.File(path, "w")` on the results file truncates it and writes its own
    file into the same inode, in HDF5's default format (superblock version 0)."""

    def rewrite(nxs: Path) -> None:
        with h5py.File(nxs, "w") as f:
            f.create_group("analysis").attrs["note"] = "a notebook's"

    code, out, err = _run_and_take_the_file_away(tmp_path, rewrite)

    nxs = tmp_path / "results" / "scans.nxs"
    assert code != 0, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert f"nexus.writer stops: {nxs} was replaced by another file while run r1 wrote it" in err
    assert "Traceback" not in out + err
    log = writer_log(tmp_path)
    assert f"nexus.writer stops: {nxs} was changed in place by another program" in log, log
    # the notebook's file is as it wrote it: readable, and nothing of the writer's in it
    with h5py.File(nxs, "r") as f:
        assert list(f) == ["analysis"]
        assert f["analysis"].attrs["note"] == "a notebook's"

    # HDF5 cannot write that format in SWMR mode: the resume says so, not "free space"
    pipeline_file = tmp_path / "p.pipeline.yaml"
    done = _pipeline(tmp_path, "run", "--resume", "--set", "scans.watch=false", "p.pipeline.yaml")
    assert done.returncode != 0, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (
        f"nexus.writer cannot write {nxs}: it is an HDF5 file of an older format (superblock "
        "version 0, HDF5's default), which HDF5 cannot write in SWMR mode; move that file "
        f"aside (rename it), then `pipeline run --resume {pipeline_file}` writes every entry "
        "of run r1 into a new file there from the run's stored inputs"
    ) in done.stderr, done.stderr
    assert "free space" not in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    with h5py.File(nxs, "r") as f:  # the refused file is left untouched
        assert list(f) == ["analysis"]
        assert "asapo_file_id" not in f.attrs

    nxs.rename(nxs.with_name("notebook.nxs"))
    _resume(tmp_path)
    scans = sorted(p.name for p in (tmp_path / "data").glob("*.xdi"))
    assert sorted(source_files(nxs)) == scans


def _notebook_file(nxs: Path) -> None:
    with h5py.File(nxs, "w") as f:  # HDF5's default format: superblock version 0
        f.create_group("analysis")


def _text_file(nxs: Path) -> None:
    nxs.write_text("energy mu\n7100 0.1\n")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            _notebook_file,
            "is an HDF5 file of an older format (superblock version 0, HDF5's default), "
            "which HDF5 cannot write in SWMR mode",
        ),
        (_text_file, "is not an HDF5 file"),
    ],
)
def test_a_file_hdf5_cannot_write_in_swmr_mode_is_named_and_left_alone(tmp_path, make, problem):
    """Such a file at the path was said as a failed open with a remedy about free space."""
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "data" / P65_SCANS[0])
    (tmp_path / "p.pipeline.yaml").write_text(PIPELINE_FILE)
    nxs = tmp_path / "results" / "scans.nxs"
    nxs.parent.mkdir()
    make(nxs)
    before = nxs.read_bytes()

    done = _pipeline(tmp_path, "run", "--set", "scans.watch=false", "p.pipeline.yaml")

    assert done.returncode != 0, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (
        f"nexus.writer cannot write {nxs}: it {problem}; move that file aside (rename it), then "
        f"`pipeline run --resume {tmp_path / 'p.pipeline.yaml'}` writes every entry of run r1 "
        "into a new file there from the run's stored inputs"
    ) in done.stderr, done.stderr
    assert "free space" not in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert nxs.read_bytes() == before
