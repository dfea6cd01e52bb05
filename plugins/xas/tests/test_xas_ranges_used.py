"""The ranges xraylarch chose are recorded with every result (an outside XAS scientist's review).

The settings record what was given, `null` where xraylarch chooses the pre-edge and post-edge
ranges, the spline's k range and the noise window; nothing said what it chose (for goethite
the post-edge fit starts 25 eV above E0, where the tutorial said about 150 eV), and a newer
xraylarch choosing otherwise would change the edge step, chi(k) and the noise without a trace.
Now each spectrum and merge carries the values used beside the settings as given, the NeXus
file stores them, and the tutorial gives the xraylarch call that reproduces the noise.

The example P65 pipeline on the real files, through the CLI; every reference is xraylarch's,
called at test time on the same files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xas_procs import pipeline_command
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.normalize import compute_mu, normalize_scan
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import read_scan

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
TUTORIAL = EXAMPLE.parents[1] / "docs" / "tutorial-p65-xas.md"
FOILS = ("cu_metal_rt.xdi", "fe_metal_rt.xdi")
PRE_EDGE = ("pre1", "pre2", "norm1", "norm2", "nnorm")


def _larch(energy: np.ndarray, mu: np.ndarray, autobk: dict[str, Any] | None = None) -> Any:
    """xraylarch's pre_edge (and autobk with `autobk`) with its defaults on the arrays."""
    from larch import Group
    from larch.xafs import autobk as larch_autobk
    from larch.xafs import pre_edge

    group = Group(energy=np.asarray(energy, dtype=float), mu=np.asarray(mu, dtype=float))
    pre_edge(group)
    if autobk is not None:
        larch_autobk(group, **autobk)
    return group


def _larch_pre_edge(group: Any) -> dict[str, float]:
    return {name: float(getattr(group.pre_edge_details, name)) for name in PRE_EDGE}


def _larch_autobk(group: Any, kweight: float) -> dict[str, float]:
    details = group.autobk_details
    return {
        "autobk_rbkg": float(group.rbkg),
        "autobk_kweight": float(kweight),
        "autobk_kmin": float(details.kmin),
        "autobk_kmax": float(details.kmax),
        "autobk_nknots": float(details.nknots),
    }


@pytest.mark.parametrize("name", [*P65_SCANS, *FOILS])
def test_each_spectrum_records_the_ranges_larch_used(name: str) -> None:
    scan = read_scan(DATA / name)
    mode = "transmission" if scan.channel("it") is not None else "mu"
    spectrum = normalize_scan(scan, NormalizeParams(mode=mode))
    ref = _larch(scan.energy, compute_mu(scan, mode), {})
    values = spectrum.values
    assert {k: values.get(k) for k in PRE_EDGE} == _larch_pre_edge(ref)
    assert {k: values.get(k) for k in _larch_autobk(ref, 1)} == _larch_autobk(ref, 1)
    # the settings stay as given: the merge compares them, the run's fingerprint reads them
    assert all(spectrum.settings["pre_edge"][k] is None for k in PRE_EDGE)
    assert spectrum.settings["autobk"]["kmax"] is None
    assert spectrum.settings["noise"]["kmax"] is None


# -- the example pipeline's NeXus file --------------------------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pipeline run` of the P65 example on the two goethite scans: its NeXus file."""
    pytest.importorskip("asapo_pipelines_nexus")  # the example writes one
    folder = tmp_path_factory.mktemp("example")
    (folder / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, folder / "data" / name)
    pipeline = folder / EXAMPLE.name
    shutil.copy(EXAMPLE, pipeline)
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    return folder / "results" / "p65.nxs"


def _entries(path: Path) -> list[dict[str, Any]]:
    """The processed entries: title, settings as given, results, k and chi, energy and mu."""
    import h5py

    found = []
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        for entry in f.values():
            if "process" not in entry:
                continue
            results = entry["process/results"]
            found.append(
                {
                    "title": entry["title"].asstr()[()],
                    "settings": json.loads(entry["process/parameters/data"].asstr()[()]),
                    "results": {k: results[k][()] for k in results},
                    "units": {k: results[k].attrs.get("units") for k in results},
                    "k": entry["chi/k"][()],
                    "chi": entry["chi/chi"][()],
                    "energy": entry["data/energy"][()],
                    "mu": entry["data/mu"][()],
                }
            )
    assert len(found) == 4, [e["title"] for e in found]  # two spectra, two merges
    return found


def test_the_nexus_file_stores_the_ranges_larch_used_beside_the_settings(example: Path) -> None:
    for entry in _entries(example):
        settings, results = entry["settings"], entry["results"]
        # xraylarch on the entry's own mu(E) (a scan's as measured, a merge's mean)
        autobk = {k: v for k, v in settings["autobk"].items() if k != "enabled"}  # the unit's
        ref = _larch(entry["energy"], entry["mu"], autobk)
        for name, value in _larch_pre_edge(ref).items():
            assert results[name] == value, (entry["title"], name)
            assert settings["pre_edge"][name] is None, (entry["title"], name)  # as given
        for name, value in _larch_autobk(ref, settings["autobk"]["kweight"]).items():
            assert results[name] == value, (entry["title"], name)
        assert settings["autobk"]["kmax"] is None
        assert entry["units"]["pre1"] == entry["units"]["norm2"] == "eV"
        assert entry["units"]["autobk_kmax"] == "1/angstrom"


def _tutorial_noise_call() -> str:
    text = TUTORIAL.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    found = [b for b in blocks if "estimate_noise(" in b]
    assert found, "the tutorial gives no xraylarch call that reproduces the noise"
    return found[0]


def test_the_recorded_window_and_the_tutorials_larch_call_give_the_noise(example: Path) -> None:
    """larch's `estimate_noise` with the noise settings as given and the window recorded, and
    the call the tutorial gives (run as a reader copies it), on each entry's chi(k), give the
    noise recorded."""
    from larch import Group
    from larch.xafs import estimate_noise

    code = _tutorial_noise_call()
    for entry in _entries(example):
        noise, results = dict(entry["settings"]["noise"]), entry["results"]
        assert noise["kmax"] is None  # as given; the window used is in the results
        noise.update(kmin=results["noise_kmin"], kmax=results["noise_kmax"])
        group = Group()
        names = ("rmin", "rmax", "kweight", "kmin", "kmax", "dk", "dk2", "kstep", "nfft")
        estimate_noise(entry["k"], entry["chi"], group=group, **{k: noise[k] for k in names})
        assert results["epsilon_k"] == pytest.approx(group.epsilon_k, rel=1e-9), entry["title"]
        assert results["noise_kmax"] == pytest.approx(float(entry["k"].max()) - 0.5)
        space: dict[str, Any] = {"k": entry["k"], "chi": entry["chi"]}
        exec(code, space)
        assert results["epsilon_k"] == pytest.approx(space["g"].epsilon_k, rel=1e-9)
        if entry["title"].endswith("normalised 20K_GOE_Fe_K_240.00000.xdi"):
            assert f"{results['epsilon_k']:.3e}" in code  # the number it quotes


def test_the_tutorial_states_the_ranges_larch_chooses_for_goethite() -> None:
    """The defaults the tutorial describes are the ones used: its numbers for the first
    goethite scan are xraylarch's pre_edge_details on that file."""
    scan = read_scan(DATA / P65_SCANS[0])
    used = _larch_pre_edge(_larch(scan.energy, compute_mu(scan, "transmission")))
    text = " ".join(TUTORIAL.read_text().split())
    pre = f"pre-edge fit over {used['pre1']:.1f} to {used['pre2']:.1f} eV"
    post = f"post-edge fit over {used['norm1']:g} to {used['norm2']:g} eV"
    assert pre in text
    assert post in text
    assert f"nnorm {used['nnorm']:g}" in text
