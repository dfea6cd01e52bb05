"""A reprocess's results cite the raw entries of the run it replays, and of no other run.

Two runs of the same scans (`pipeline run`, then `pipeline run --fresh`) each write a raw entry
of every scan into one NeXus file; `pipeline reprocess --from r1` replays r1's raw scan
messages and writes no raw entry of its own. Its spectra name (`raw_scans`) the raw entries
they come from: before, the writer was not told which run the reprocess replays and named the
entries of every run holding the scan, r1's and r2's, though r2's messages never reached the
reprocess. The worker now tells the unit (`UnitContext.replays`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR

pytest.importorskip("asapo_pipelines_xas")

PIPELINE = """\
pipeline: replay-cites
units:
  scans:
    unit: xas.scan-files
    params: {directory: data/, pattern: "*.xdi"}
    outputs: {scans: raw-scans}
  normalize:
    unit: xas.normalize
    inputs: {scans: raw-scans}
    outputs: {spectra: spectra}
  writer:
    unit: nexus.writer
    params: {file: results/scans.nxs}
    inputs: {scans: raw-scans, spectra: spectra}
"""


def _inputs(entry: h5py.Group) -> dict:
    return json.loads(text(entry["provenance/inputs/data"][()]))


def _files(entry: h5py.Group) -> list[str]:
    return json.loads(text(entry["provenance/source_files/data"][()]))


def test_a_reprocess_cites_only_the_raw_entries_of_the_run_it_replays(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / "data" / name)
    (tmp_path / "p.pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    pipeline_ok(tmp_path, "run", "p.pipeline.yaml")
    pipeline_ok(tmp_path, "run", "--fresh", "p.pipeline.yaml")
    done = pipeline_ok(tmp_path, "reprocess", "p.pipeline.yaml", "--from", "r1")
    assert "run r3 replays" in done.stdout, done.stdout

    with h5py.File(tmp_path / "results" / "scans.nxs", "r", locking=False) as f:
        entries = {name: f[name] for name in f}
        # the raw entry of each scan file, by run: both earlier runs wrote one of each
        raw = {
            (text(e.attrs["asapo_run"]), _files(e)[0]): name
            for name, e in entries.items()
            if text(e.attrs[CONTENT_ATTR]) == "xas/scan"
        }
        assert sorted(raw) == sorted((r, s) for r in ("r1", "r2") for s in P65_SCANS)
        replayed = [
            e
            for e in entries.values()
            if text(e.attrs["asapo_run"]) == "r3" and text(e.attrs[CONTENT_ATTR]) == "xas/spectrum"
        ]
        assert len(replayed) == len(P65_SCANS)
        for entry in replayed:
            (scan,) = _files(entry)
            cited = [(r["run"], r["entry"]) for r in _inputs(entry)["raw_scans"]]
            assert cited == [("r1", raw[("r1", scan)])], entry.name
            # the checksum it records is that of the file r1's raw entry records
            (checksum,) = json.loads(text(entry["provenance/source_file_checksums/data"][()]))
            (own,) = json.loads(
                text(f[raw[("r1", scan)]]["provenance/source_file_checksums/data"][()])
            )
            assert checksum == own, entry.name
