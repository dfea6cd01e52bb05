"""A scan file read before its writer finished and sent again whole (a new version of the file)
has two raw-scan and two spectrum entries in the NeXus file, which had the same titles: which
was current could not be told (an outside tester, a watched night). The later version's titles
now name it: `normalised <file> (version 2)`. The example P65 pipeline on the real P65 files:
the second read as its first 60 % of rows, then whole, between two runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok as _pipeline
from nexus_testdata import DATA, P65_SCANS

pytest.importorskip("asapo_pipelines_xas")

#: what the writer adds to the title of a version a later one replaced
SUPERSEDED = re.compile(r" \(superseded by version 2, entry\d+\)$")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _early(source: Path, target: Path, share: float) -> None:
    """The file as read before the DAQ finished: its header and the first `share` of its rows."""
    lines = source.read_text().splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    target.write_text("".join(lines[: rows[int(len(rows) * share)]]))


def test_the_entries_of_a_files_later_version_say_which_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / P65_SCANS[0], data / P65_SCANS[0])
    _early(DATA / P65_SCANS[1], data / P65_SCANS[1], 0.6)
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    _pipeline(tmp_path, "run", EXAMPLE.name)
    shutil.copy(DATA / P65_SCANS[1], data / P65_SCANS[1])  # the writer finished
    _pipeline(tmp_path, "run", EXAMPLE.name)  # resumes the run: the file is sent again

    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        titles = [f[name]["title"][()].decode() for name in f if "title" in f[name]]
    second = [t for t in titles if P65_SCANS[1] in t and "merge" not in t]
    # the first version's entries say which entry replaced them (test_nexus_superseded_read)
    assert len([t for t in second if SUPERSEDED.search(t)]) == 2, second
    second = [SUPERSEDED.sub("", t) for t in second]
    normalised = sorted(t.partition(": ")[2] for t in second if "normalised" in t)
    assert normalised == [f"normalised {P65_SCANS[1]}", f"normalised {P65_SCANS[1]} (version 2)"]
    raw = sorted(t.partition(": ")[2] for t in second if "normalised" not in t)
    assert len(raw) == 2, titles
    assert raw[1] == f"{raw[0]} (version 2)", raw
    # the first scan, read once, is titled as before
    assert not any("version" in t for t in titles if P65_SCANS[0] in t and "merge" not in t)
