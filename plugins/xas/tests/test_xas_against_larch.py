"""The units' numbers against xraylarch called directly on the same files, at test time (#13).

Tolerances are the issue's: per scan E0 0.1 eV, edge step 0.5 %, epsilon_k 3 % with the same
noise window; merged epsilon_k 3 % of `merge_groups` + `estimate_noise`; alignment shifts 0.05 eV
of an independent least-squares fit (xraylarch's `energy_align`).
"""

from __future__ import annotations

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, larch_analyse

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import Spectrum, compute_mu, normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

FILES = (*P65_SCANS, "cu_metal_rt.xdi", "fe_metal_rt.xdi")


def _larch_group(energy, mu):
    """pre_edge and autobk with xraylarch's defaults; the noise with kmax = max(k) - 0.5."""
    from larch import Group

    return larch_analyse(
        Group(energy=np.asarray(energy, dtype=float), mu=np.asarray(mu, dtype=float))
    )


def _foil_group(scan, shift: float = 0.0):
    from larch import Group
    from larch.xafs import pre_edge

    group = Group(energy=scan.energy + shift, mu=compute_mu(scan, "reference"))
    pre_edge(group)
    group.dmude = np.gradient(group.mu, group.energy)  # align on dmu/dE of ln(It/Iref)
    return group


def _larch_shift(scan, anchor, shift: float = 0.0) -> float:
    """xraylarch's least-squares alignment of the foil derivative over [E0-15, E0+35] eV.
    (energy_align adds `emin` to E0, so -15 eV below E0 is emin=15.)"""
    from larch.xafs import energy_align

    return float(energy_align(_foil_group(scan, shift), _foil_group(anchor), emin=15, emax=35))


@pytest.mark.parametrize("name", FILES)
def test_per_scan_values_match_larch_with_the_same_window(name):
    scan = read_scan(DATA / name)
    mode = "transmission" if scan.channel("it") is not None else "mu"
    spectrum = normalize_scan(scan, NormalizeParams(mode=mode))
    ref = _larch_group(scan.energy, compute_mu(scan, mode))
    values = spectrum.values
    assert values["noise_kmax"] == pytest.approx(float(ref.k.max()) - 0.5)
    assert values["noise_kmax"] < float(spectrum.arrays["k"].max())  # inside the data
    assert values["noise_kmin"] == 0.0
    assert values["e0"] == pytest.approx(ref.e0, abs=0.1)
    assert values["edge_step"] == pytest.approx(ref.edge_step, rel=0.005)
    assert values["epsilon_k"] == pytest.approx(ref.epsilon_k, rel=0.03)


def test_every_noise_parameter_takes_effect(p65_scans):
    base = {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2}
    changes = {
        "rmin": 12.0,
        "rmax": 28.0,
        "kweight": 1,
        "kmin": 3.0,
        "kmax": 13.0,
        "dk": 1.0,
        "dk2": 1.0,
        "kstep": 0.1,  # xraylarch's own estimate_noise raises here (nfft/2 as an index)
        "kwindow": "hanning",  # xraylarch's own estimate_noise ignores it (always Kaiser)
        "nfft": 4096,
    }

    def noise(settings):
        params = NormalizeParams.model_validate({"noise": settings})
        values = normalize_scan(p65_scans[0], params).values
        return values["epsilon_k"], values["kmax_suggest"]

    reference = noise(base)
    for key, value in changes.items():
        assert noise({**base, key: value}) != reference, key


@pytest.mark.parametrize("name", P65_SCANS)
def test_the_noise_copy_is_larchs_estimate_noise_for_the_kaiser_window(name):
    """normalize.estimate_noise repeats xraylarch's steps to fix its ignored `kwindow`: with
    the Kaiser window (the only one xraylarch's applies) the numbers must be its own."""
    from larch.xafs import estimate_noise as larch_estimate_noise

    from asapo_pipelines_xas.normalize import estimate_noise
    from asapo_pipelines_xas.params import NoiseParams

    scan = read_scan(DATA / name)
    ref = _larch_group(scan.energy, compute_mu(scan, "transmission"))
    settings = {"rmin": 15.0, "rmax": 25.0, "kweight": 2, "kmin": 2.0, "kmax": 13.0}
    ours = estimate_noise(ref.k, ref.chi, NoiseParams.model_validate(settings))
    larch_estimate_noise(ref.k, ref.chi, group=ref, **settings)
    assert ours["epsilon_k"] == pytest.approx(ref.epsilon_k, rel=1e-9)
    assert ours["epsilon_r"] == pytest.approx(ref.epsilon_r, rel=1e-9)
    assert ours["kmax_suggest"] == pytest.approx(float(ref.kmax_suggest), rel=1e-9)
    # why the copy exists: xraylarch's own still applies Kaiser whatever `kwindow` says (when
    # this fails, xraylarch honours it and normalize.estimate_noise can call it instead)
    hanning = estimate_noise(
        ref.k, ref.chi, NoiseParams.model_validate({**settings, "kwindow": "hanning"})
    )
    larch_estimate_noise(ref.k, ref.chi, group=ref, **settings, kwindow="hanning")
    assert ref.epsilon_k == pytest.approx(ours["epsilon_k"], rel=1e-9)
    assert hanning["epsilon_k"] != pytest.approx(ref.epsilon_k, rel=1e-3)


def test_merged_noise_matches_merge_groups(p65_scans):
    from larch.io import merge_groups

    spectra = [normalize_scan(s) for s in p65_scans]
    merger = Merger()
    for spectrum in spectra:
        merged = merger.add(spectrum)
    assert merged.n_merged == 2
    # the same merge by hand: the independent alignment shifts, merge_groups, larch's analysis
    from larch import Group

    shifts = [0.0, _larch_shift(p65_scans[1], p65_scans[0])]
    groups = [
        Group(energy=scan.energy + shift, mu=compute_mu(scan, "transmission"))
        for scan, shift in zip(p65_scans, shifts, strict=True)
    ]
    ref = larch_analyse(merge_groups(groups))
    assert merged.values["epsilon_k"] == pytest.approx(ref.epsilon_k, rel=0.03)
    assert merged.values["e0"] == pytest.approx(ref.e0, abs=0.1)


@pytest.mark.parametrize("name", FILES)
def test_a_merge_of_one_scan_is_that_scan_to_its_last_point(name):
    # merge_groups(trim=True) slices up to the last common energy, leaving it out: the merge of
    # one coarse-stepped foil scan ended a step early, and its noise came out 0.7-0.9 % higher
    scan = read_scan(DATA / name)
    mode = "transmission" if scan.channel("it") is not None else "mu"
    spectrum = normalize_scan(scan, NormalizeParams(mode=mode))
    merged = Merger(MergeParams(align="none")).add(spectrum)
    assert merged.n_merged == 1
    np.testing.assert_array_equal(merged.arrays["energy"], spectrum.arrays["energy"])
    np.testing.assert_allclose(merged.arrays["mu"], spectrum.arrays["mu"], rtol=1e-12)
    for value in ("e0", "edge_step", "noise_kmax", "epsilon_k"):
        assert merged.values[value] == pytest.approx(spectrum.values[value], rel=1e-9), value


def test_two_merged_scans_keep_every_energy_they_share(p65_scans):
    spectra = [normalize_scan(s) for s in p65_scans]
    merger = Merger(MergeParams(align="none"))
    for spectrum in spectra:
        merged = merger.add(spectrum)
    lo = max(s.arrays["energy"].min() for s in spectra)
    hi = min(s.arrays["energy"].max() for s in spectra)
    first = spectra[0].arrays["energy"]
    np.testing.assert_array_equal(merged.arrays["energy"], first[(first >= lo) & (first <= hi)])


def test_alignment_shifts_match_an_independent_least_squares_fit(p65_scans):
    spectra = [normalize_scan(s) for s in p65_scans]
    # the second repeat as measured, and moved by a known +1.5 eV (a monochromator jump)
    moved = Spectrum(
        {**spectra[1].metadata, "file": "moved.xdi"},
        {**spectra[1].arrays, "energy": spectra[1].arrays["energy"] + 1.5},
        dict(
            spectra[1].values,
            e0=spectra[1].values["e0"] + 1.5,
            e0_ref=spectra[1].values["e0_ref"] + 1.5,
        ),
        spectra[1].settings,
    )
    merger = Merger(MergeParams(max_e0_shift=3.0))
    merger.add(spectra[0])
    merger.add(spectra[1])
    result = merger.add(moved)
    fitted = {s["scan"]: s for s in result.scans}
    expected = _larch_shift(p65_scans[1], p65_scans[0])
    got = fitted[spectra[1].metadata["file"]]
    assert got["shift"] == pytest.approx(expected, abs=0.05)
    assert 0 < got["shift_err"] < 0.1
    expected_moved = _larch_shift(p65_scans[1], p65_scans[0], shift=1.5)
    assert fitted["moved.xdi"]["shift"] == pytest.approx(expected_moved, abs=0.05)
    assert fitted["moved.xdi"]["shift"] == pytest.approx(-1.5 + expected, abs=0.05)
    # aligned, the moved copy has the E0 of the scan it copies
    assert fitted["moved.xdi"]["e0"] == pytest.approx(got["e0"], abs=0.05)
    none = Merger(MergeParams(align="none", max_e0_shift=3.0))
    none.add(spectra[0])
    assert none.add(moved).scans[1]["shift"] == 0.0


def _p65_file_without_element(tmp_path, source: str):
    """A P65-format file (P65 header, `#` column line) of another edge's foil, with nothing
    naming the element: neither the header nor the file name."""
    header = []
    for line in (DATA / P65_SCANS[0]).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    scan = read_scan(DATA / source)
    rows = np.column_stack([scan.energy, scan.channels["i0"], scan.channels["it"]])
    path = tmp_path / "foil_scan.00001.xdi"
    lines = [*header[:-1], "# enc_energy VFC01 VFC02"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path, scan


def test_a_file_silent_on_its_element_gets_element_and_edge_from_e0(tmp_path):
    from xraydb import guess_edge

    path, original = _p65_file_without_element(tmp_path, "cu_metal_rt.xdi")
    scan = read_scan(path)
    assert not scan.metadata.get("element")
    assert not scan.metadata.get("edge")
    spectrum = normalize_scan(scan)
    ref = _larch_group(original.energy, compute_mu(original, "transmission"))
    element, edge = guess_edge(ref.e0)
    assert (element, edge) == ("Cu", "K")  # the file is the Cu foil (SOURCES.md)
    assert spectrum.metadata["element"] == element
    assert spectrum.metadata["edge"] == edge
    identity = spectrum.metadata["identity"]
    assert identity["inferred"] == ["element", "edge"]
    assert identity["from"] == "E0"
    assert identity["e0"] == pytest.approx(ref.e0, abs=0.1)
    # the merge groups it under the inferred element, not `<file>///transmission`
    merged = Merger().add(spectrum)
    assert (merged.group["element"], merged.group["edge"]) == ("Cu", "K")
    # a header's own element is never overwritten
    named = read_scan(DATA / P65_SCANS[0])
    assert "identity" not in normalize_scan(named).metadata


def test_the_inferred_identity_reaches_the_nexus_entry(tmp_path):
    """The NeXus writer stores a spectrum's metadata with it: the inferred element and edge are
    there, marked as inferred (when the NeXus plugin is installed)."""
    import json

    h5py = pytest.importorskip("h5py")
    writer_module = pytest.importorskip("asapo_pipelines_nexus.writer")

    path, _ = _p65_file_without_element(tmp_path, "cu_metal_rt.xdi")
    spectrum = normalize_scan(read_scan(path))
    with writer_module.NexusWriter(tmp_path / "cu.nxs") as writer:
        name = writer.write_result(spectrum.to_json(), "spectra/1")
    with h5py.File(tmp_path / "cu.nxs", "r") as f:
        meta = json.loads(f[f"{name}/asapo/metadata"].asstr()[()])
    assert (meta["element"], meta["edge"]) == ("Cu", "K")
    assert meta["identity"]["inferred"] == ["element", "edge"]
