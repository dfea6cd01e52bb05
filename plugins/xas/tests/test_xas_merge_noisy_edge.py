"""Repeats are screened on where their edge is, not on xraylarch's E0 alone: E0 is the maximum
of dmu/dE, and in noisy data (dilute fluorescence) noise moves it from one feature of the edge
to another. The two bundled goethite repeats measured in fluorescence (If/I0) have E0s 3.5 eV
apart, and an outside tester saw both rejected ('no majority'), nothing merged, and the agent
asking to check the sample, while their reference foils align to 0.03 eV and their normalised
mu crosses half the edge step 0.15 eV apart: the same edge. The screening compares those
half-step energies; a real shift of the sample's edge moves them too and is still rejected, in
clean transmission data and in noisy fluorescence, where E0 may not see it.

Real files (the bundled P65 repeats, and variants with the sample's mu moved in energy while
the foil's stays), through the units as a pipeline runs them; every reference value is
xraylarch's pre_edge (and numpy) on the same files at test time."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

#: the merge's default limit on the edge position (eV)
LIMIT = 1.0
ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: the P65 columns of each role (examples/data/SOURCES.md)
COLUMNS = {"energy": "enc_energy", "i0": "vfc01", "it": "vfc02", "iref": "vfc03", "if": "vfc04"}


def forward(result, unit_message, port=None):
    return [unit_message(o.value, metadata=o.metadata, port=port) for o in result.outputs]


def chain(run_unit, unit_message, directory: Path, mode: str):
    """scan-files -> normalize (`mode`) -> merge -> convergence agent on the files in
    `directory`: (the spectra, the last merge, the last plan)."""
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    spectra = run_unit(
        "xas.normalize", forward(scans, unit_message), params={**REFERENCE_SETTINGS, "mode": mode}
    )
    merged = run_unit("xas.merge", forward(spectra, unit_message))
    plans = run_unit(
        "xas.convergence-agent", forward(merged, unit_message, port="merged"), params=ADVISOR
    )
    assert spectra.errors == merged.errors == plans.errors == []
    return spectra.values("spectra"), merged.values("merged")[-1], plans.values("plans")[-1]


def larch_edge(path: Path, mode: str) -> tuple[float, float]:
    """(E0, half-step energy) of the file's sample by xraylarch's pre_edge with its defaults:
    E0, and the energy where its normalised mu crosses 0.5 going up (linearly interpolated; of
    several crossings the nearest E0)."""
    from larch import Group
    from larch.xafs import pre_edge

    from asapo_pipelines_xas.normalize import compute_mu
    from asapo_pipelines_xas.readers import read_scan

    scan = read_scan(path)
    group = Group(energy=np.asarray(scan.energy, dtype=float), mu=compute_mu(scan, mode))
    pre_edge(group)
    energy, norm = group.energy, group.norm
    up = np.flatnonzero((norm[:-1] < 0.5) & (norm[1:] >= 0.5))
    half = [np.interp(0.5, norm[i : i + 2], energy[i : i + 2]) for i in up]
    return float(group.e0), float(min(half, key=lambda h: abs(h - group.e0)))


def move_sample(source: Path, target: Path, by: float, mode: str) -> Path:
    """`source` as a measurement of a sample whose edge moved up by `by` eV: its mu(E) is
    mu(E - by) (If for fluorescence; It for transmission, with Iref so that the foil's
    ln(It/Iref) stays as measured)."""
    lines = source.read_text().splitlines()
    names = [n.lower() for n in next(x for x in reversed(lines) if x.startswith("#"))[1:].split()]
    header = [x for x in lines if x.startswith("#") or not x.strip()]
    data = np.array([[float(v) for v in x.split()] for x in lines if x.strip() and x[0] != "#"])
    col = {role: names.index(name) for role, name in COLUMNS.items()}
    energy, i0 = data[:, col["energy"]], data[:, col["i0"]]
    order = np.argsort(energy, kind="stable")

    def moved(values: np.ndarray) -> np.ndarray:
        return np.interp(energy - by, energy[order], values[order])

    if mode == "fluorescence":
        data[:, col["if"]] = i0 * moved(data[:, col["if"]] / i0)
    else:
        it = data[:, col["it"]]
        new_it = i0 * np.exp(-moved(np.log(i0 / it)))
        data[:, col["iref"]] *= new_it / it
        data[:, col["it"]] = new_it
    body = [" ".join(repr(float(v)) for v in row) for row in data]
    target.write_text("\n".join([*header, *body]) + "\n")
    return target


def folder(tmp_path: Path, moved: dict[int, float], mode: str) -> Path:
    """The two P65 repeats in a folder of their own, repeat i's sample moved by moved[i] eV."""
    directory = tmp_path / "data"
    directory.mkdir()
    for i, name in enumerate(P65_SCANS):
        if i in moved:
            move_sample(DATA / name, directory / name, moved[i], mode)
        else:
            shutil.copy(DATA / name, directory / name)
    return directory


def half_steps_said(reason: str) -> list[float]:
    return [float(x) for x in re.findall(r"half-step energy (\d+\.\d+) eV", reason)]


def test_noisy_fluorescence_repeats_are_merged(run_unit, unit_message, tmp_path):
    directory = folder(tmp_path, {}, "fluorescence")
    edges = [larch_edge(directory / name, "fluorescence") for name in P65_SCANS]
    (e0_a, half_a), (e0_b, half_b) = edges
    # what the tester saw: E0 (xraylarch's) 3.5 eV apart, the half-step energies together
    assert abs(e0_a - e0_b) > 2 * LIMIT
    assert abs(half_a - half_b) < LIMIT / 2
    spectra, merged, plan = chain(run_unit, unit_message, directory, "fluorescence")
    assert merged["n_merged"] == 2, merged["rejected"]
    assert merged["rejected"] == []
    assert "no_majority" not in merged
    # the E0s the merge reports are still xraylarch's (on the aligned energy scale)
    for scan, (e0, _) in zip(merged["scans"], edges, strict=True):
        assert scan["e0"] == pytest.approx(e0 + scan["shift"], abs=1e-6)
    assert [s["values"]["e0"] for s in spectra] == pytest.approx([e0_a, e0_b], abs=1e-6)
    # and the agent judges the merge's noise instead of asking to check the sample
    assert plan["action"] != "change_parameters", plan["reason"]
    assert plan["arguments"]["metrics"]["n_merged"] == 2


def test_a_real_shift_in_transmission_is_rejected_naming_the_half_step_energies(
    run_unit, unit_message, tmp_path
):
    """The second repeat's sample moved by 1.5 eV, its foil not (clean transmission data): no
    majority, as before, and the reason says what was compared."""
    directory = folder(tmp_path, {1: 1.5}, "transmission")
    edges = [larch_edge(directory / name, "transmission") for name in P65_SCANS]
    assert abs(edges[1][1] - edges[0][1]) > LIMIT
    _, merged, plan = chain(run_unit, unit_message, directory, "transmission")
    assert merged["n_merged"] == 0
    assert merged["no_majority"]["scans"] == [s["scan"] for s in merged["scans"]]
    reason = merged["no_majority"]["reason"]
    assert (
        f"two scans agree within {LIMIT:g} eV between their half-step energies and 10% "
        "between their edge steps" in reason
    )
    # each scan's E0 (xraylarch's) and half-step energy, on the aligned energy scale
    shifts = [s["shift"] for s in merged["scans"]]
    for (e0, _), shift in zip(edges, shifts, strict=True):
        assert f"E0 {e0 + shift:.2f} eV" in reason
    want = [half + shift for (_, half), shift in zip(edges, shifts, strict=True)]
    assert half_steps_said(reason) == pytest.approx(want, abs=0.006)
    for rejected in merged["rejected"]:
        assert rejected["reasons"][0].startswith("no majority: E0 ")
        assert "half-step energy" in rejected["reasons"][0]
    assert plan["action"] == "change_parameters"


def test_a_shift_that_noise_hides_from_e0_is_rejected_in_fluorescence(
    run_unit, unit_message, tmp_path
):
    """The first repeat's sample moved by 3 eV in the noisy fluorescence data: its E0 lands
    within the limit of the other's (the old screening merged them), its half-step energy 3 eV
    away."""
    directory = folder(tmp_path, {0: 3.0}, "fluorescence")
    (e0_a, half_a), (e0_b, half_b) = (
        larch_edge(directory / name, "fluorescence") for name in P65_SCANS
    )
    assert abs(e0_a - e0_b) <= LIMIT
    assert abs(half_a - half_b) > 2 * LIMIT
    _, merged, plan = chain(run_unit, unit_message, directory, "fluorescence")
    assert merged["n_merged"] == 0
    assert "no_majority" in merged
    shifts = [s["shift"] for s in merged["scans"]]
    assert half_steps_said(merged["no_majority"]["reason"]) == pytest.approx(
        [half_a + shifts[0], half_b + shifts[1]], abs=0.006
    )
    assert plan["action"] == "change_parameters"
