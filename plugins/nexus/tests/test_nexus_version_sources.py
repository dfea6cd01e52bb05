"""The files a merge and a decision cite (`provenance/source_files`) when the merge took a later
version of a scan file (read early, then whole: `xas.scan-files` sends it again). A data
manager found the merge citing `20K_GOE_Fe_K_240.00001.xdi@383535-1796632122105776019`, the
version's key, which names no file in the scan directory, and the same file among the files
the merge screened out (`rejected_source_files`), its earlier version being replaced, not
rejected. The example P65 pipeline on the real P65 files: the second read as its first 60 % of
rows, then whole, between two sessions of one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR, is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _early(source: Path, target: Path, share: float) -> None:
    """The file as read before the DAQ finished: its header and the first `share` of its rows."""
    lines = source.read_text().splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    target.write_text("".join(lines[: rows[int(len(rows) * share)]]))


def _note(entry: h5py.Group, name: str) -> list[str]:
    path = f"provenance/{name}/data"
    return json.loads(text(entry[path][()])) if path in entry else []


def test_a_merge_of_a_later_version_cites_the_files_by_their_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / P65_SCANS[0], data / P65_SCANS[0])
    _early(DATA / P65_SCANS[1], data / P65_SCANS[1], 0.6)
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    pipeline_ok(tmp_path, "run", EXAMPLE.name)
    shutil.copy(DATA / P65_SCANS[1], data / P65_SCANS[1])  # the writer finished
    pipeline_ok(tmp_path, "run", EXAMPLE.name)  # resumes the run: the file is sent again

    in_directory = {path.name for path in data.iterdir()}
    cited: dict[str, tuple[list[str], list[str]]] = {}
    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        titles = [text(f[name]["title"][()]) for name in f]
        assert any(title.endswith(f"{P65_SCANS[1]} (version 2)") for title in titles), titles
        for name, entry in f.items():
            merge = text(entry.attrs.get(CONTENT_ATTR, "")) == "xas/merged"
            if merge or is_decision(entry):
                cited[name] = (_note(entry, "source_files"), _note(entry, "rejected_source_files"))
    assert cited
    for name, (files, rejected) in cited.items():
        # every file cited is one a reader finds in the scan directory
        assert set(files) | set(rejected) <= in_directory, (name, files, rejected)
        # and a file is either in the merge or screened out of it, never both
        assert not set(files) & set(rejected), (name, files, rejected)
    # the newest merge and the decision on it (the last two entries) merged both files whole
    last = sorted(cited, key=lambda name: int(name.removeprefix("entry")))[-2:]
    for name in last:
        assert cited[name] == (sorted(P65_SCANS), []), (name, cited[name])
