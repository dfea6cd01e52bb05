"""The measurement mode of raw scan entries: a P65 file always carries It and If, so the
experiment (nexus.writer's `mode` param) says which one NXxas's absorbed beam is."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from nexus_testdata import P65_SCANS, p65_scan_message, result_message, xdi_mu_message

from asapo_pipelines_nexus.errors import NexusWriterError
from asapo_pipelines_nexus.params import NexusWriterParams
from asapo_pipelines_nexus.writer import NXXAS_MODES, NexusWriter


def _write(path, mode: str, scan: dict) -> None:
    params = NexusWriterParams(file=str(path), mode=mode)
    with NexusWriter.from_params(params) as writer:
        writer.write("xas/scan", scan, "raw-scans/1")


def test_a_fluorescence_experiment_writes_fluorescence_yield_raw_entries(tmp_path):
    """`mode: fluorescence`: the raw entry of a P65 scan (It and If both measured) says
    Fluorescence Yield, its absorbed beam is If, and It is kept beside it."""
    scan = p65_scan_message(P65_SCANS[0])
    assert {"it", "if"} <= set(scan["channels"])  # what makes the mode ambiguous
    path = tmp_path / "fluo.nxs"
    _write(path, "fluorescence", scan)
    with h5py.File(path, "r") as f:
        entry = f["entry1"]
        mode = entry["data/mode"].asstr()[()]
        assert mode == "Fluorescence Yield"
        assert mode in NXXAS_MODES
        np.testing.assert_array_equal(
            entry["instrument/absorbed_beam/data"][()], scan["channels"]["if"]
        )
        # NXdata's signal is the absorbed beam, linked: the plotted curve is If
        assert entry["data/absorbed_beam"] == entry["instrument/absorbed_beam/data"]
        np.testing.assert_array_equal(
            entry["instrument/transmitted_beam/data"][()], scan["channels"]["it"]
        )
        assert entry["instrument/transmitted_beam"].attrs["NX_class"] == "NXdetector"
        assert "fluorescence" not in entry["instrument"]  # If is stored once, as absorbed beam
    validate = pytest.importorskip("nexusformat.nexus.validate")
    assert validate.validate_application(str(path), path="entry1") == (0, 0)


def test_transmission_and_auto_take_it(tmp_path):
    """`mode: transmission`, and `auto` (the default, as before), take It for a P65 scan."""
    scan = p65_scan_message(P65_SCANS[0])
    assert NexusWriterParams(file="x.nxs").mode == "auto"
    for mode in ("transmission", "auto"):
        path = tmp_path / f"{mode}.nxs"
        _write(path, mode, scan)
        with h5py.File(path, "r") as f:
            entry = f["entry1"]
            assert entry["data/mode"].asstr()[()] == "Transmission"
            np.testing.assert_array_equal(
                entry["instrument/absorbed_beam/data"][()], scan["channels"]["it"]
            )
            np.testing.assert_array_equal(
                entry["instrument/fluorescence/data"][()], scan["channels"]["if"]
            )
            assert "transmitted_beam" not in entry["instrument"]


def test_a_mode_whose_channel_the_scan_lacks_is_refused_with_a_sentence(tmp_path):
    """A scan without the mode's channel (an XDI file with a ready mu and I0) is refused with
    a sentence naming the mode and the scan's channels, and no entry is written."""
    path = tmp_path / "refused.nxs"
    with pytest.raises(NexusWriterError) as refused:
        _write(path, "fluorescence", xdi_mu_message("fe_metal_rt.xdi"))
    said = str(refused.value)
    assert "mode is fluorescence" in said
    assert "If" in said
    assert "mu, I0" in said
    with h5py.File(path, "r") as f:
        assert [k for k in f if k.startswith("entry")] == []


def _with_key(unit_message, body, key, port):
    meta = {"provenance": {"unit": "p65/up", "port": port, "inputs": [], "seq": 0, "key": key}}
    return unit_message(body, port=port, metadata=meta)


@pytest.mark.parametrize("mode", ["auto", "fluorescence"])
def test_auto_mode_warns_once_when_spectra_are_fluorescence(
    tmp_path, unit_harness, unit_message, caplog, mode
):
    """A writer left at `auto` in a fluorescence pipeline: the raw entries say Transmission
    while the spectra (xas.normalize's metadata `mode`) say fluorescence; the writer says so
    once, naming the param that fixes it. With `mode: fluorescence` it has nothing to say."""
    scans = [p65_scan_message(name) for name in P65_SCANS]
    spectra = [result_message(scan) for scan in scans]
    for spectrum in spectra:
        spectrum["metadata"]["mode"] = "fluorescence"
    path = tmp_path / "p65.nxs"
    harness = unit_harness("nexus.writer", params={"file": str(path), "mode": mode})
    with caplog.at_level("WARNING"):
        for i, (scan, spectrum) in enumerate(zip(scans, spectra, strict=True)):
            harness.send(
                _with_key(unit_message, scan, f"raw/{i}", "scans"),
                _with_key(unit_message, spectrum, f"norm/{i}", "spectra"),
            )
        assert harness.result.errors == []
        harness.shutdown()
    told = [r.getMessage() for r in caplog.records if "computed in fluorescence" in r.getMessage()]
    with h5py.File(path, "r") as f:
        raw = [f[n] for n in f if f[n].attrs.get("asapo_content_type") == "xas/scan"]
        modes = {entry["data/mode"].asstr()[()] for entry in raw}
    if mode == "auto":
        assert modes == {"Transmission"}
        assert len(told) == 1, told
        assert "`mode: fluorescence`" in told[0]
        assert str(path) in told[0]
    else:
        assert modes == {"Fluorescence Yield"}
        assert told == []
