"""One sample measured at two temperatures, its files naming it alike (`Sample.name: Cu`): the
header's name groups them, so they were averaged as repeats whatever the files were called
(`cu_T_100.xdi`, `cu_T_300.xdi`), and `group_by` could not hold the temperature. The XDI
reader now takes `Sample.temperature`, and `group_by: [..., temperature]` keeps the two apart;
the default still groups by sample (documented).

Real data: the Cu foil of shared/data/xas (SOURCES.md), its header given a temperature and its
It counts made noisier (a fixed seed) for the 'other' measurement; real xraylarch."""

from __future__ import annotations

import numpy as np
from xas_testdata import DATA

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

FOIL = "cu_metal_rt.xdi"


def _at(tmp_path, name: str, kelvin: int, seed: int):
    """The foil's file as measured at `kelvin`: the header says so, and It has its own noise."""
    rng = np.random.default_rng(seed)
    out = []
    for line in (DATA / FOIL).read_text().splitlines():
        if line.startswith("# Sample.name"):
            out += [line, f"# Sample.temperature: {kelvin} K"]
        elif line.startswith("#") or not line.strip():
            out.append(line)
        else:
            energy, i0, it, _mu = (float(v) for v in line.split())
            it *= 1 + 2e-4 * rng.standard_normal()
            out.append(f"{energy:.3f} {i0:.6g} {it:.6g} {np.log(i0 / it):.8f}")
    path = tmp_path / name
    path.write_text("\n".join(out) + "\n")
    return path


def test_temperature_in_group_by_keeps_two_temperatures_of_one_sample_apart(tmp_path):
    scans = [read_scan(_at(tmp_path, f"cu_T_{k}.xdi", k, k)) for k in (100, 300)]
    assert [s.metadata["temperature"] for s in scans] == ["100 K", "300 K"]
    assert {s.metadata["sample"] for s in scans} == {"Cu"}
    spectra = [normalize_scan(s, NormalizeParams(mode="transmission")) for s in scans]

    by_sample = Merger()
    merges = [by_sample.add(s) for s in spectra]
    assert merges[-1].n_merged == 2  # the default: one sample, two repeats (documented)

    apart = Merger(MergeParams(group_by=["sample", "element", "edge", "mode", "temperature"]))
    merges = [apart.add(s) for s in spectra]
    assert [m.n_merged for m in merges] == [1, 1]
    assert [m.group["temperature"] for m in merges] == ["100 K", "300 K"]
