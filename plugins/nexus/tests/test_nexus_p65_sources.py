"""A merge's `provenance/source_files` as a reader citing it sees them, after a real P65 run
(`pipeline run` of the example, both reference plugins): only the scans the merge accepted, so
a duplicate copy of a scan, which the merge rejects, is not cited as data of the spectrum."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
#: a copy of the first scan under a name the example's pattern takes: the merge rejects it.
#: Read between the repeats (the second saved as SECOND): a copy that changes nothing merged
#: makes no merge of its own, the second repeat's merge lists it
DUPLICATE = "20K_GOE_Fe_K_240.00001.xdi"
SECOND = "20K_GOE_Fe_K_240.00002.xdi"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _note(entry, name) -> list[str]:
    path = f"provenance/{name}/data"
    return json.loads(_text(entry[path][()])) if path in entry else []


@pytest.fixture(scope="module")
def merges(tmp_path_factory) -> list[dict[str, list[str]]]:
    work = tmp_path_factory.mktemp("p65-sources")
    (work / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], work / "data" / P65_SCANS[0])
    shutil.copy(DATA / P65_SCANS[1], work / "data" / SECOND)
    shutil.copy(DATA / P65_SCANS[0], work / "data" / DUPLICATE)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(work / "cache")
    # the local executor starts `pipeline worker` tasks from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pipeline")), "run", EXAMPLE.name],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = []
    with h5py.File(work / "results" / "p65.nxs", "r", locking=False) as f:
        for entry in f.values():
            if _text(entry.attrs.get(CONTENT_ATTR, "")) != "xas/merged":
                continue
            results = entry["process/results"]
            found.append(
                {
                    "accepted": json.loads(_text(results["accepted"][()])),
                    "rejected": json.loads(_text(results["rejected"][()])),
                    "source_files": _note(entry, "source_files"),
                    "rejected_source_files": _note(entry, "rejected_source_files"),
                }
            )
    return found


def _file(scan_id: str) -> str:
    return scan_id.rpartition("key:")[2]


def test_a_merge_cites_only_the_scans_it_accepted(merges):
    assert merges, "the run wrote no merge"
    # the duplicate copy was screened out by the merge at least once (its data are the first
    # scan's), so this run tests what it means to
    assert any(m["rejected"] for m in merges)
    for merge in merges:
        accepted = {_file(s) for s in merge["accepted"]}
        assert set(merge["source_files"]) == accepted
        assert set(merge["rejected_source_files"]) == {_file(r["scan"]) for r in merge["rejected"]}
        assert not accepted & set(merge["rejected_source_files"])
    last = merges[-1]
    assert len(last["source_files"]) == 2
    assert {*last["source_files"], *last["rejected_source_files"]} == {
        P65_SCANS[0],
        SECOND,
        DUPLICATE,
    }
