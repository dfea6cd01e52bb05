"""`recursive: true` and the same file name in two subdirectories (a beamline writing one folder
per day, with scan numbers starting again): an outside tester found nothing lost, but the
normalize summary said `spectra 2` and listed each name once, and the NeXus entries of
day1/X and day2/X had the same title, `file` and `source_files`, so nobody could tell which
normalised spectrum came from which day. The scan is now called by its path under the watched
directory everywhere a person reads it, as its key already was; a file at the top of the
directory keeps its plain name. Real `pipeline run` of the real P65 scans, the NeXus file
read with h5py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import pytest
from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS, p65_variant

pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus writer plugin")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entries(path: Path, content: str) -> list[dict[str, Any]]:
    """Title, `file` metadata and source files of each entry of one content type."""
    out = []
    with h5py.File(path, "r", locking=False) as f:
        for entry in f.values():
            if entry.attrs.get("asapo_content_type") != content:
                continue
            out.append(
                {
                    "title": _text(entry["title"][()]),
                    "file": json.loads(_text(entry["asapo/metadata"][()])).get("file"),
                    "source_files": json.loads(_text(entry["provenance/source_files/data"][()])),
                }
            )
    return out


def test_same_name_in_two_subdirectories_is_two_scans_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for day in ("day1", "day2"):
        (data / day).mkdir(parents=True)
    for seed, name in enumerate(P65_SCANS):
        shutil.copy(DATA / name, data / "day1" / name)
        # another measurement under the same name: different data, restarting numbers
        p65_variant(name, data / "day2" / name, seed=seed, noise=2e-4)
    units = scan_chain("data", REFERENCE_SETTINGS, {}, recursive=True)
    units["writer"] = {
        "unit": "nexus.writer",
        "params": {"file": "results/p65.nxs"},
        "inputs": {"scans": "raw-scans", "spectra": "spectra"},
    }
    pipeline = write_pipeline(tmp_path, "p65-days", units)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    expected = sorted(f"{day}/{name}" for day in ("day1", "day2") for name in P65_SCANS)

    status = pipeline_command(pipeline, "status", "--json")
    summaries = {u["task"]: u.get("summary") or {} for u in json.loads(status.stdout)["units"]}
    normalized = summaries["normalize"]
    assert normalized["spectra"] == len(expected), normalized
    assert sorted(r["file"] for r in normalized["scans"]) == expected, normalized
    assert "spectra 4" in done.stdout

    nexus = tmp_path / "results" / "p65.nxs"
    for content, prefix in (("xas/scan", ""), ("xas/spectrum", "normalised ")):
        found = entries(nexus, content)
        assert sorted(e["file"] for e in found) == expected, found
        for entry in found:
            assert entry["source_files"] == [entry["file"]], entry
            assert entry["title"].endswith(f": {prefix}{entry['file']}"), entry
        assert len({e["title"] for e in found}) == len(expected), found
