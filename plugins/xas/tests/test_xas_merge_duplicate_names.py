"""A copy of a scan file under a new scan number is rejected naming the earlier scan by its
file, as the tutorial shows ("duplicate of scan 20K_GOE_Fe_K_240.00000.xdi: ..."), not by the
transport's key of its message (the outside tester: "duplicate of scan
dup/scans|scans|key:dup_Fe_K_240.00000.xdi: ..."). Real P65 files through a real `pipeline
run`; the merge of the two real repeats is checked against xraylarch's `merge_groups` and
`pre_edge` at test time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from xas_procs import pipeline_command, read, scan_chain, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS, larch_merge_e0

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
STEM = P65_SCANS[0].rsplit(".", 2)[0]
#: read between the repeats: a copy makes no merge of its own (the merge is unchanged), the
#: second repeat's merge lists it
COPY = f"{STEM}.00001.xdi"
SECOND = f"{STEM}.00002.xdi"


def larch_e0(paths: list[Path]) -> float:
    return larch_merge_e0(paths, NORMALIZE)


def test_a_copy_in_a_pipeline_run_names_the_earlier_scan_by_its_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / P65_SCANS[0], data / P65_SCANS[0])
    shutil.copy(DATA / P65_SCANS[0], data / COPY)
    shutil.copy(DATA / P65_SCANS[1], data / SECOND)
    pipeline = write_pipeline(tmp_path, "dup-names", scan_chain("data", NORMALIZE, {}))
    result = pipeline_command(pipeline, "run", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    units = json.loads(result.stdout)["units"]
    group = next(u["summary"] for u in units if u["task"] == "merge")["merges"][
        f"{STEM}/Fe/K/transmission"
    ]
    # the copy is no third measurement: counted apart, as the NeXus title counts it
    assert (group["scans"], group["merged"], group["rejected"]) == (2, 2, 0)
    assert group["copies_left_out"] == 1

    merges = [m for _, m in read(tmp_path / "store", "merged")]
    assert [m["n_merged"] for m in merges] == [1, 2]
    last = merges[-1]
    (copy,) = last["rejected"]
    assert copy["scan"].endswith(COPY)  # the id is the source's key; the reason names the file
    assert copy["duplicate"] is True
    assert copy["reasons"] == [
        f"duplicate of scan {P65_SCANS[0]}: the same measured data (energy, mu, I0), "
        "a copy rather than a repeat"
    ]
    assert last["n_merged"] == 2
    want = larch_e0([data / P65_SCANS[0], data / SECOND])
    assert last["values"]["e0"] == pytest.approx(want, abs=0.3)


def merge_summary(pipeline: Path, *args: str) -> dict:
    result = pipeline_command(pipeline, "run", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    units = json.loads(result.stdout)["units"]
    return next(u["summary"] for u in units if u["task"] == "merge")["merges"][
        f"{STEM}/Fe/K/transmission"
    ]


def test_a_resumed_merge_still_lists_the_copy_it_left_out_before(tmp_path):
    """The copy made no merge of its own, so no output of the merge named it, and a restarted
    merge was handed only the inputs its outputs named: after `--resume` its merges and its
    summary forgot the copy (the outside tester of a night in watch mode). The worker now
    records each input a unit that keeps state processed without an output, and hands it to
    `restore` after a restart too."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / P65_SCANS[0], data / P65_SCANS[0])
    shutil.copy(DATA / P65_SCANS[0], data / COPY)
    pipeline = write_pipeline(tmp_path, "dup-resume", scan_chain("data", NORMALIZE, {}))
    first = merge_summary(pipeline)
    assert (first["scans"], first["merged"], first["copies_left_out"]) == (1, 1, 1)

    shutil.copy(DATA / P65_SCANS[1], data / SECOND)
    group = merge_summary(pipeline, "--resume")
    assert (group["scans"], group["merged"], group["rejected"]) == (2, 2, 0)
    assert group.get("copies_left_out") == 1
    last = [m for _, m in read(tmp_path / "store", "merged")][-1]
    assert [c["scan"].rsplit("/", 1)[-1].rsplit(":", 1)[-1] for c in last["rejected"]] == [COPY]
    want = larch_e0([data / P65_SCANS[0], data / SECOND])
    assert last["values"]["e0"] == pytest.approx(want, abs=0.3)
