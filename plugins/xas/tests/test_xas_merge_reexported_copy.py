"""A scan file exported again with its numbers changed is the same measurement, not a repeat:
written with 5 significant digits, with I0 x 10 (a gain changed: mu offset by ln 10), or with a
dark current subtracted from its counters (mu changed by a smooth curve). None of its mu values
is the earlier scan's, but its noise is: merged, the outside tester's two real P65 scans and
three such copies gave `scans 5, merged 5`, and the convergence agent stopped on a noise floor
made of two measurements counted five times. Real P65 files, the copies made at test time as
the tester's gen_dup.py made them; what the merge of the real repeats is, is computed at test
time from them alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: P65 columns: 0 energy, 10-13 the counters (VFC01-04: I0, It, Iref, If)
ENERGY, I0, COUNTERS = 0, 10, slice(10, 14)
STEM = "dup_Fe_K_240"
PARAMS = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})


def load(source: str) -> tuple[list[str], np.ndarray]:
    lines = (DATA / source).read_text().splitlines()
    header = [line for line in lines if line.startswith("#") or not line.strip()]
    data = np.array([[float(x) for x in line.split()] for line in lines if line not in header])
    return header, data


def save(path: Path, header: list[str], data: np.ndarray, form: str = "%.10g") -> Path:
    body = [" ".join(form % x for x in row) for row in data]
    path.write_text("\n".join([*header, *body]) + "\n")
    return path


def gain(data: np.ndarray) -> np.ndarray:
    data = data.copy()
    data[:, I0] *= 10  # a Keithley gain in the re-export: mu = ln(I0/It) + ln 10
    return data


def dark(data: np.ndarray) -> np.ndarray:
    data = data.copy()
    data[:, COUNTERS] -= 0.001  # a dark current subtracted from every counter
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """The tester's folder: the two real scans, then scan 0 with 5 digits, scan 0 with I0 x 10,
    scan 1 with a dark current subtracted."""
    folder = tmp_path_factory.mktemp("reexported")
    real = [
        Path(shutil.copyfile(DATA / n, folder / f"{STEM}.{i:05d}.xdi"))
        for i, n in enumerate(P65_SCANS)
    ]
    (h0, d0), (h1, d1) = load(P65_SCANS[0]), load(P65_SCANS[1])
    return [
        *real,
        save(folder / f"{STEM}.00002.xdi", h0, d0, "%.5g"),
        save(folder / f"{STEM}.00003.xdi", h0, gain(d0)),
        save(folder / f"{STEM}.00004.xdi", h1, dark(d1)),
    ]


def merges(paths: list[Path]) -> list[dict]:
    """The merge after each scan, as the pipeline emits them."""
    merger = Merger(MergeParams())
    return [merger.add(normalize_scan(read_scan(path), PARAMS)).to_json() for path in paths]


def test_reexported_copies_are_rejected_with_the_file_they_copy_and_how(files):
    result = merges(files)[-1]
    assert (result["n_scans"], result["n_merged"]) == (5, 2)
    assert sorted(result["accepted"]) == [files[0].name, files[1].name]
    rejected = {r["scan"]: r for r in result["rejected"]}
    assert sorted(rejected) == [f.name for f in files[2:]]
    want = {
        files[2].name: (files[0].name, "the same counts rounded to 5 significant digits"),
        files[3].name: (files[0].name, f"mu offset by a constant +{np.log(10):.4g} (a gain"),
        files[4].name: (files[1].name, "mu differs from it by a smooth curve without noise"),
    }
    for name, (original, how) in want.items():
        copy = rejected[name]
        assert copy["duplicate"] is True
        (reason,) = copy["reasons"]
        assert reason.startswith(f"duplicate of scan {original}: {how}"), reason
        assert reason.endswith("a copy rather than a repeat"), reason
    # the merge is the two real repeats', as if no copy had come
    alone = merges(files[:2])[-1]
    assert result["values"]["epsilon_k"] == pytest.approx(alone["values"]["epsilon_k"], rel=1e-9)
    assert result["values"]["e0"] == pytest.approx(alone["values"]["e0"], abs=1e-9)


def test_the_agent_does_not_stop_on_a_floor_made_of_copies(files):
    # the tester's advisor: a target a little below the two real scans' merged noise
    agent = ConvergenceAgent(ConvergenceParams(target_noise=1.2e-4, max_scans=20))
    alone = merges(files[:2])[-1]
    assert alone["values"]["epsilon_k"] > 1.2e-4  # not reached yet with the two real scans
    decisions = [agent.decide(doc) for doc in merges(files)]
    last = decisions[-1]
    assert last["action"] != "stop", last
    assert "noise floor" not in json.dumps(decisions)


def test_a_copy_with_fewer_digits_says_its_points_were_dropped_not_cut(tmp_path):
    """6 digits: the same mu values within 1e-5 (caught before), but rounding made some energies
    equal and the reader kept one point of each: the file is not cut short."""
    header, data = load(P65_SCANS[0])
    rows = len(data)
    copy = save(tmp_path / f"{STEM}.00002.xdi", header, data, "%.6g")
    dropped = rows - len(np.unique(np.array([float(f"{e:.6g}") for e in data[:, ENERGY]])))
    assert dropped > 0  # what the test is about
    original = Path(shutil.copyfile(DATA / P65_SCANS[0], tmp_path / f"{STEM}.00000.xdi"))
    (reason,) = merges([original, copy])[-1]["rejected"][0]["reasons"]
    assert f"its file has all {rows} rows; {dropped} were dropped because rounding" in reason
    assert "cut short" not in reason


def test_in_fluorescence_a_gain_change_scales_mu_and_is_a_copy_too(files):
    """mu = If/I0: I0 x 10 divides it by 10. Whether the two real repeats' E0 agree in this
    mode is the E0 screening's to say; neither is a copy, and the copy is not a third scan."""
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "fluorescence"})
    merger = Merger(MergeParams())
    for path in [files[0], files[1], files[3]]:
        result = merger.add(normalize_scan(read_scan(path), params)).to_json()
    duplicates = [r for r in result["rejected"] if r.get("duplicate")]
    assert [r["scan"] for r in duplicates] == [files[3].name]
    assert duplicates[0]["reasons"][0].startswith(
        f"duplicate of scan {files[0].name}: mu scaled by 0.1 (a gain change)"
    ), duplicates[0]["reasons"]


def test_in_transmission_a_scaled_copy_is_not_called_a_gain_change(tmp_path):
    """A second outside tester's copy with mu x 1.07 (It -> It^1.07 / I0^0.07) was explained as
    "a gain change": in transmission a gain adds a constant to ln(I0/It), it does not scale it."""
    header, data = load(P65_SCANS[0])
    scaled = data.copy()
    it = 11  # the P65 file's It column (SOURCES.md)
    scaled[:, it] = data[:, it] ** 1.07 / data[:, I0] ** 0.07
    copy = save(tmp_path / f"{STEM}.00002.xdi", header, scaled)
    original = Path(shutil.copyfile(DATA / P65_SCANS[0], tmp_path / f"{STEM}.00000.xdi"))
    (reason,) = merges([original, copy])[-1]["rejected"][0]["reasons"]
    assert reason.startswith(f"duplicate of scan {original.name}: mu scaled by 1.07"), reason
    assert "(the same data scaled, noise and all)" in reason
    assert "gain" not in reason
