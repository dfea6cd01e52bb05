"""A scan file saved again (fewer digits, every counter rescaled) is the same measurement, not a
new repeat: merged as one it weighted that scan twice or three times and made the merge look
noisier than the real repeats' (the outside tester: `scans 4, merged 4 ... noise 0.0001377`
against 1.30e-4 for the two real P65 scans). Real P65 files, normalised and merged by the units'
code; the two real repeats' merge is checked against xraylarch's `merge_groups` at test time."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: P65 columns 10-13: the counter channels (VFC01-04: I0, It, Iref, If)
CHANNELS = slice(10, 14)


def resave(source: str, path: Path, change) -> Path:
    """`source` with its data rows (as arrays) passed through `change` and written by it."""
    lines = (DATA / source).read_text().splitlines()
    header = [line for line in lines if line.startswith("#") or not line.strip()]
    data = np.array([[float(x) for x in line.split()] for line in lines if line not in header])
    path.write_text("\n".join([*header, *change(data)]) + "\n")
    return path


def seven_digits(data: np.ndarray) -> list[str]:
    return [" ".join(f"{x:.7g}" for x in row) for row in data]


def counters_doubled(data: np.ndarray) -> list[str]:
    data = data.copy()
    data[:, CHANNELS] *= 2  # mu = ln(I0/It) and the foil's ln(It/Iref) unchanged
    return [" ".join(repr(float(x)) for x in row) for row in data]


def merged(paths: list[Path]) -> dict:
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    merger = Merger(MergeParams())
    for path in paths:
        result = merger.add(normalize_scan(read_scan(path), params))
    return result.to_json()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("resaved")
    real = [Path(shutil.copyfile(DATA / name, folder / name)) for name in P65_SCANS]
    stem = P65_SCANS[0].rsplit(".", 2)[0]
    return [
        *real,
        resave(P65_SCANS[0], folder / f"{stem}.00002.xdi", seven_digits),
        resave(P65_SCANS[0], folder / f"{stem}.00003.xdi", counters_doubled),
    ]


def test_a_file_saved_again_is_a_duplicate_and_the_two_real_repeats_are_merged(files):
    result = merged(files)
    assert sorted(result["accepted"]) == sorted(P65_SCANS)
    rejected = {r["scan"]: r for r in result["rejected"]}
    assert sorted(rejected) == [files[2].name, files[3].name]
    for copy in rejected.values():
        assert copy["duplicate"] is True
        assert copy["reasons"][0].startswith(f"duplicate of scan {P65_SCANS[0]}: the same ")
    # the merge is the two real repeats', as if the copies had never come
    alone = merged(files[:2])
    assert result["values"]["epsilon_k"] == pytest.approx(alone["values"]["epsilon_k"], rel=1e-9)
    assert result["values"]["e0"] == pytest.approx(alone["values"]["e0"], abs=1e-9)


def test_the_two_real_repeats_merge_as_xraylarch_merges_them(files):
    from larch import Group
    from larch.io import merge_groups

    result = merged(files)
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    shifts = {s["scan"]: s["shift"] for s in result["scans"]}
    groups = []
    for path in files[:2]:
        spectrum = normalize_scan(read_scan(path), params)
        energy = spectrum.arrays["energy"] + shifts[path.name]
        groups.append(Group(energy=energy, mu=spectrum.arrays["mu"]))
    want = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    energy, mu = (np.asarray(result["arrays"][k], dtype=float) for k in ("energy", "mu"))
    # trim=True leaves out the last common energy (see merge_mu): compare where both are
    inside = energy <= want.energy.max()
    assert inside.sum() >= len(energy) - 1
    assert np.allclose(mu[inside], np.interp(energy[inside], want.energy, want.mu), atol=1e-6)
