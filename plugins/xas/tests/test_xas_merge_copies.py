"""Copies of a scan that are not the same file point by point are copies still, not repeats:
cut short by its last points, recalibrated (its energies shifted), a few points deglitched, or
interpolated onto another energy grid (the outside tester: the two real P65 scans and three
such copies of scan 0 gave `scans 5, merged 5`, a noise floor made of one measurement counted
four times, and the agent stopped). What tells a copy: its mu values are the earlier scan's,
which the noise of a real repeat never makes them (the two real repeats are not duplicates of
each other, in either mode, nor the other bundled scans of anything). Real P65 files, the
copies made at test time as the tester's gen_dup.py made them; the merge of the two real
repeats is xraylarch's `merge_groups` and `pre_edge` at test time."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.errors import SpectrumError
from asapo_pipelines_xas.merge import Merger, _Entry, same_measurement
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: P65 columns: 0 energy, 11 It
ENERGY, IT = 0, 11
STEM = P65_SCANS[0].rsplit(".", 2)[0]
PARAMS = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})


def load(source: str) -> tuple[list[str], np.ndarray]:
    lines = (DATA / source).read_text().splitlines()
    header = [line for line in lines if line.startswith("#") or not line.strip()]
    data = np.array([[float(x) for x in line.split()] for line in lines if line not in header])
    return header, data[np.argsort(data[:, ENERGY], kind="stable")]


def save(path: Path, header: list[str], data: np.ndarray) -> Path:
    body = [" ".join(f"{x:.10g}" for x in row) for row in data]
    path.write_text("\n".join([*header, *body]) + "\n")
    return path


def cut_short(data: np.ndarray) -> np.ndarray:
    return data[: int(len(data) * 0.985)]  # its last 1.5 % of points lost


def recalibrated(data: np.ndarray) -> np.ndarray:
    data = data.copy()
    data[:, ENERGY] += 0.3
    return data


def deglitched(data: np.ndarray) -> np.ndarray:
    """3 % of the points' It replaced by the mean of their neighbours'."""
    data = data.copy()
    n = len(data)
    rng = np.random.default_rng(1)
    index = rng.choice(np.arange(1, n - 1), int(0.03 * n), replace=False)
    data[index, IT] = 0.5 * (data[index - 1, IT] + data[index + 1, IT])
    return data


def regridded(data: np.ndarray) -> np.ndarray:
    """Interpolated (linearly) onto as many evenly spaced energies over the same range."""
    _, first = np.unique(data[:, ENERGY], return_index=True)
    data = data[first]
    grid = np.linspace(data[0, ENERGY], data[-1, ENERGY], len(data))
    return np.column_stack([np.interp(grid, data[:, ENERGY], c) for c in data.T])


COPIES = {"cut short": cut_short, "recalibrated": recalibrated, "deglitched": deglitched}
COPIES["interpolated"] = regridded


def entry(path: Path, mode: str = "transmission") -> _Entry:
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": mode})
    return _Entry(path.name, normalize_scan(read_scan(path), params))


def merge(paths: list[Path]) -> dict:
    merger = Merger(MergeParams())
    for path in paths:
        result = merger.add(normalize_scan(read_scan(path), PARAMS))
    return result.to_json()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("copies")
    real = [Path(shutil.copyfile(DATA / name, folder / name)) for name in P65_SCANS]
    header, data = load(P65_SCANS[0])
    made = [
        save(folder / f"{STEM}.{i + 2:05d}.xdi", header, change(data))
        for i, change in enumerate(COPIES.values())
    ]
    return [*real, *made]


def test_copies_cut_short_recalibrated_deglitched_or_regridded_are_duplicates(files):
    result = merge(files)
    assert sorted(result["accepted"]) == sorted(P65_SCANS)
    rejected = {r["scan"]: r for r in result["rejected"]}
    assert sorted(rejected) == [f.name for f in files[2:]]
    reasons = {}
    for kind, path in zip(COPIES, files[2:], strict=True):
        copy = rejected[path.name]
        assert copy["duplicate"] is True
        (reasons[kind],) = copy["reasons"]
        assert reasons[kind].startswith(f"duplicate of scan {P65_SCANS[0]}: "), reasons[kind]
        assert reasons[kind].endswith("a copy rather than a repeat")
        assert "a real repeat's noise makes almost none of its points agree" in reasons[kind]
    # why, in words: the same mu values, and what else is different
    assert "the same mu values point by point" in reasons["cut short"]
    assert f"{int(len(load(P65_SCANS[0])[1]) * 0.985)} points" in reasons["cut short"]
    assert "its energies shifted by +0.30 eV (recalibrated)" in reasons["recalibrated"]
    assert "at 97" in reasons["deglitched"]
    assert "interpolated onto another energy grid" in reasons["interpolated"]
    # the merge is the two real repeats', as if no copy had come: xraylarch's merge of them
    alone = merge(files[:2])
    assert result["values"]["epsilon_k"] == pytest.approx(alone["values"]["epsilon_k"], rel=1e-9)
    assert result["n_merged"] == 2


def test_the_merge_of_the_two_real_repeats_is_xraylarchs(files):
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import pre_edge

    result = merge(files)
    shifts = {s["scan"]: s["shift"] for s in result["scans"]}
    groups = []
    for path in files[:2]:
        spectrum = normalize_scan(read_scan(path), PARAMS)
        groups.append(
            Group(energy=spectrum.arrays["energy"] + shifts[path.name], mu=spectrum.arrays["mu"])
        )
    want = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    pre_edge(want)
    assert result["values"]["e0"] == pytest.approx(float(want.e0), abs=0.3)


@pytest.mark.parametrize("mode", ["transmission", "fluorescence"])
def test_the_real_repeats_are_not_duplicates_of_each_other(mode):
    a, b = (entry(DATA / name, mode) for name in P65_SCANS)
    assert not same_measurement(a, b)
    assert not same_measurement(b, a)


def test_no_bundled_scan_is_a_duplicate_of_another():
    scans = []
    for path in sorted(DATA.glob("*.xdi")):
        for mode in ("transmission", "fluorescence"):
            try:
                scans.append(entry(path, mode))
            except SpectrumError:  # a mode the file has no channels for
                continue
    assert len(scans) >= 4
    for a, b in itertools.permutations(scans, 2):
        if a.scan_id != b.scan_id:
            assert not same_measurement(a, b), (a.scan_id, b.scan_id)
