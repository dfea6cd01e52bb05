"""The run's own NeXus file put back as an older copy (a backup restored, a copy taken
mid-run). The writer took it as the run's file, which it is (same file id), and went on: the
entries written after the copy was taken were in no file, while the summary still said
`entries_written 6 ... entries_in_file 3` and nothing else did. Their inputs were acknowledged
long ago, so nothing would ever bring them back. Now the next start writes them again from the
run's stored inputs and says so in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from nexus_cli import WATCHING_WRITER, pipeline_ok, source_files, writer_log
from nexus_testdata import DATA, P65_SCANS

pytest.importorskip("asapo_pipelines_xas")


def _read_folder(work: Path, *resume: str) -> subprocess.CompletedProcess[str]:
    return pipeline_ok(work, "run", *resume, "--set", "scans.watch=false", "p.pipeline.yaml")


def test_an_older_copy_of_the_runs_file_gets_its_missing_entries_back(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "p.pipeline.yaml").write_text(WATCHING_WRITER.format(name="nexus-older"))
    nxs = tmp_path / "results" / "scans.nxs"
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "data")
    _read_folder(tmp_path)
    backup = tmp_path / "backup.nxs"
    shutil.copy(nxs, backup)  # the night's backup: one entry
    for later in (P65_SCANS[1], "fe_metal_rt.xdi"):
        shutil.copy(DATA / later, tmp_path / "data")
    _read_folder(tmp_path, "--resume")
    every_scan = sorted(p.name for p in (tmp_path / "data").glob("*.xdi"))
    assert sorted(source_files(nxs)) == every_scan

    shutil.copy(backup, nxs)  # restored from the backup: two entries of the run are gone
    assert sorted(source_files(nxs)) == [P65_SCANS[0]]
    done = _read_folder(tmp_path, "--resume")

    # each once: the one the copy held is not doubled
    assert sorted(source_files(nxs)) == every_scan
    assert "entries_rebuilt_in_file 2" in done.stdout, done.stdout
    log = writer_log(tmp_path)
    assert (
        "results/scans.nxs held 1 entry where run r1 left 3 when it last wrote it (an older copy "
        "put back, or entries deleted): 2 entries of run r1 written again from its stored inputs"
    ) in log, log
    # said once: a later start finds the file whole and says nothing
    _read_folder(tmp_path, "--resume")
    log = writer_log(tmp_path)
    assert "older copy" not in log, log
    assert sorted(source_files(nxs)) == every_scan
