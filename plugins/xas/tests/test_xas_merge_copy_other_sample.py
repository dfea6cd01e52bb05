"""A byte-identical copy of a scan file saved under another sample's name is a copy, not a
measurement of a new sample. Before, the outside tester's copy of 20K_GOE_Fe_K_240.00000.xdi
as 20K_GOE2_Fe_K_240.00000.xdi (another group) was merged as `20K_GOE2_Fe_K_240/...: scans 1,
merged 1`, and the agent planned more scans of that phantom sample; only a copy inside one group
was rejected. Now the copy is rejected naming the earlier file and its group, the agent plans
nothing for it, and a resumed merge (its state restored from the run's spectra) does the same.
Real P65 files through real `pipeline run` sessions; the real sample's merge is checked against
xraylarch's `merge_groups` and `pre_edge` at test time."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_xas_resume_changes import run, summary
from xas_procs import decision_units, read, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS, larch_merge_e0

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
SAMPLE = P65_SCANS[0].rsplit(".", 2)[0]  # 20K_GOE_Fe_K_240
PHANTOM = "20K_GOE2_Fe_K_240"
COPY = f"{PHANTOM}.00000.xdi"
WHERE = f"sample {SAMPLE}, element Fe, edge K, mode transmission"


def pipeline(tmp_path: Path, names: list[str]) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, data / name)
    units = decision_units("data", NORMALIZE, {"target_noise": 1.2e-4})
    return write_pipeline(tmp_path, "copy-other", units)


def add_copy(tmp_path: Path) -> None:
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "data" / COPY)


def last_of(store: Path, source: str, sample: str) -> dict[str, Any]:
    found = [v for _, v in read(store, source)]
    if source == "plans":
        return [v for v in found if v["target"].startswith(f"{sample}/")][-1]
    return [v for v in found if v["group"]["sample"] == sample][-1]


def assert_the_copy_is_named(tmp_path: Path) -> None:
    store = tmp_path / "store"
    phantom = last_of(store, "merged", PHANTOM)
    assert phantom["n_merged"] == 0
    (copy,) = phantom["rejected"]
    assert copy["duplicate"] is True
    assert copy["reasons"] == [
        f"duplicate of scan {P65_SCANS[0]} of another group ({WHERE}): the same measured "
        "data (energy, mu, I0), bit for bit, saved under another name, a copy rather than a "
        "measurement of this group"
    ]
    plan = last_of(store, "plans", PHANTOM)
    assert plan["action"] == "stop"
    assert plan.get("plan") is None
    assert plan["reason"].startswith("no scan of this group is left to merge")
    real = last_of(store, "merged", SAMPLE)
    assert real["n_merged"] == 2
    assert real["rejected"] == []
    want = larch_merge_e0([DATA / n for n in P65_SCANS], NORMALIZE)
    assert real["values"]["e0"] == pytest.approx(want, abs=0.3)


def test_a_copy_under_another_samples_name_is_rejected_naming_the_file(tmp_path):
    # the copy's name sorts first, so it is read first: the sample with repeats still wins
    path = pipeline(tmp_path, list(P65_SCANS))
    add_copy(tmp_path)
    merges = summary(run(path), "merge")["merges"]
    # the copy is counted apart from the scans, as the NeXus title counts it
    counts = ("scans", "merged", "rejected", "copies_left_out")
    phantom = merges[f"{PHANTOM}/Fe/K/transmission"]
    assert [phantom.get(k, 0) for k in counts] == [0, 0, 0, 1]
    real = merges[f"{SAMPLE}/Fe/K/transmission"]
    assert [real.get(k, 0) for k in counts] == [2, 2, 0, 0]
    assert_the_copy_is_named(tmp_path)


def test_a_resumed_merge_recognises_a_copy_of_a_scan_merged_before(tmp_path):
    path = pipeline(tmp_path, list(P65_SCANS))
    summary(run(path), "merge")
    add_copy(tmp_path)  # the original is known to the resumed merge only from its state
    summary(run(path, "--resume"), "merge")
    assert_the_copy_is_named(tmp_path)
