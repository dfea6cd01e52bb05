"""Normalisation against the known values of the bundled data (examples/data/SOURCES.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asapo_pipelines_xas.errors import SpectrumError
from asapo_pipelines_xas.normalize import (
    Spectrum,
    compute_mu,
    normalize_scan,
    tabulated_edge_energy,
)
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import Scan, read_scan

# (file, mode, E0 eV, edge step) from SOURCES.md; tolerances E0 +-0.5 eV, edge step +-2 %
KNOWN = [
    ("20K_GOE_Fe_K_240.00000.xdi", "transmission", 7126.91, 0.797),
    ("20K_GOE_Fe_K_240.00001.xdi", "transmission", 7127.17, 0.795),
    ("20K_GOE_Fe_K_240.00000.xdi", "reference", 7111.5, 2.03),
    ("cu_metal_rt.xdi", "transmission", 8980.50, 2.729),
    ("fe_metal_rt.xdi", "mu", 7111.00, 3.002),
]


@pytest.mark.parametrize(("name", "mode", "e0", "step"), KNOWN)
def test_e0_and_edge_step_match_known_values(data_dir, reference_params, name, mode, e0, step):
    params = reference_params.model_copy(update={"mode": mode})
    spectrum = normalize_scan(read_scan(data_dir / name), params)
    assert spectrum.e0 == pytest.approx(e0, abs=0.5)
    assert spectrum.edge_step == pytest.approx(step, rel=0.02)


def test_spectrum_arrays_are_consistent(p65_spectra):
    s = p65_spectra[0]
    n = len(s.energy)
    for name in ("mu", "norm", "flat", "pre_edge_line", "post_edge", "bkg", "i0"):
        assert s.arrays[name].shape == (n,), name
    # norm is (mu - pre-edge line) / edge step, as pre_edge defines it
    np.testing.assert_allclose(s.norm, (s.mu - s.pre_edge_line) / s.edge_step, rtol=1e-10)
    # the normalised spectrum is 0 well below and about 1 well above the edge
    assert abs(np.mean(s.norm[s.energy < s.e0 - 50])) < 0.02
    assert np.mean(s.flat[(s.energy > s.e0 + 100) & (s.energy < s.e0 + 300)]) == pytest.approx(
        1.0, abs=0.05
    )
    assert s.k.shape == s.chi.shape
    assert s.k[-1] > 10
    assert 0 < s.epsilon_k < 1e-3


def test_transmission_mu_is_log_ratio(p65_scans):
    scan = p65_scans[0]
    np.testing.assert_allclose(
        compute_mu(scan, "transmission"), np.log(scan.channels["i0"] / scan.channels["it"])
    )
    np.testing.assert_allclose(
        compute_mu(scan, "fluorescence"), scan.channels["if"] / scan.channels["i0"]
    )
    np.testing.assert_allclose(
        compute_mu(scan, "reference"), np.log(scan.channels["it"] / scan.channels["iref"])
    )


def test_calibration_puts_the_foil_on_the_tabulated_edge(p65_scans, reference_params):
    from xraydb import xray_edge

    tabulated = tabulated_edge_energy("Fe", "K")
    assert tabulated == pytest.approx(float(xray_edge("Fe", "K").energy), abs=0.5)
    plain = normalize_scan(p65_scans[0], reference_params)
    calibrated = normalize_scan(
        p65_scans[0], reference_params.model_copy(update={"calibrate": True})
    )
    shift = calibrated.values["energy_shift"]
    assert shift == pytest.approx(tabulated - plain.values["e0_ref"])
    assert calibrated.values["e0_ref"] == pytest.approx(tabulated, abs=0.05)
    # the sample's edge moves by the same shift; its step does not change
    assert calibrated.e0 == pytest.approx(plain.e0 + shift, abs=0.3)
    assert calibrated.edge_step == pytest.approx(plain.edge_step, rel=1e-3)


def test_calibration_refuses_a_large_shift(p65_scans):
    params = NormalizeParams(calibrate=True, calibration_energy=7150.0)
    with pytest.raises(SpectrumError, match="beyond max_calibration_shift"):
        normalize_scan(p65_scans[0], params)


def test_calibration_without_reference_channel(data_dir):
    with pytest.raises(SpectrumError, match="needs the It and Iref channels"):
        normalize_scan(read_scan(data_dir / "cu_metal_rt.xdi"), NormalizeParams(calibrate=True))


def test_missing_channel_names_the_mapping(data_dir):
    with pytest.raises(SpectrumError, match=r"needs the if channel.*columns"):
        normalize_scan(
            read_scan(data_dir / "fe_metal_rt.xdi"), NormalizeParams(mode="fluorescence")
        )


def test_non_positive_counts_are_an_error(p65_scans):
    scan = p65_scans[0]
    broken = Scan(scan.energy, {**scan.channels, "it": scan.channels["it"] * 0}, scan.metadata)
    with pytest.raises(SpectrumError, match="positive counts"):
        normalize_scan(broken)


def test_xraylarch_parameters_are_passed_through(p65_scans):
    # a fixed E0 and a post-edge range are honoured: the step changes with the range
    fixed = normalize_scan(
        p65_scans[0], NormalizeParams.model_validate({"pre_edge": {"e0": 7125.0}})
    )
    assert fixed.e0 == 7125.0
    short = normalize_scan(
        p65_scans[0], NormalizeParams.model_validate({"pre_edge": {"norm1": 50, "norm2": 120}})
    )
    default = normalize_scan(p65_scans[0])
    assert short.edge_step != pytest.approx(default.edge_step, rel=1e-4)
    no_bkg = normalize_scan(
        p65_scans[0], NormalizeParams.model_validate({"autobk": {"enabled": False}})
    )
    assert "chi" not in no_bkg.arrays
    assert "epsilon_k" not in no_bkg.values


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="extra"):
        NormalizeParams.model_validate({"autobk": {"rbgk": 1.0}})


def test_spectrum_json_round_trip(p65_spectra):
    body = json.loads(json.dumps(p65_spectra[0].to_json(), allow_nan=False))
    again = Spectrum.from_json(body)
    np.testing.assert_array_equal(again.norm, p65_spectra[0].norm)
    assert again.e0 == p65_spectra[0].e0
    assert body["settings"]["program"] == "xraylarch"
    assert body["settings"]["autobk"]["kweight"] == 2
