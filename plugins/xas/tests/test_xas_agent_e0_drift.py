"""A sample changing under the beam: its E0 moves from scan to scan (photoreduction moves an
oxidised iron's edge down), the reference foil's stays. The merge kept the first scans, which
agree within `max_e0_shift`, and rejected the last ones one by one as E0 outliers; the agent then
judged the merge's noise and said stop, and nobody was told that the sample was changing (an
outside tester). Now a steady trend of E0 beyond `max_e0_drift` is its decision:
change_parameters, naming the trend; scatter of the same size is not a trend.

Repeats of the real P65 goethite scans, measured one minute apart, each with noise of its own
(a fixed seed) and the sample's absorption moved in energy (the foil's not); each scan's E0 is
xraylarch's pre_edge at test time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from xas_agent_procs import NORMALIZE, merges_of
from xas_procs import decision_units, pipeline_command, write_pipeline
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams

ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: the P65 scans' own noise in their counts, about
NOISE = 2e-4
#: noise added to If of each fluorescence repeat (the files' own is about 1 % of the step), so
#: that repeats of one file are repeats, not copies, which the merge leaves out
FLUORESCENCE_NOISE = 1e-3
STARTED = re.compile(r"Scan started at (\S+ \S+), finished at (\S+ \S+)")


def repeat(directory: Path, index: int, moved: float, fluorescence: bool = False) -> Path:
    """Repeat `index` of the P65 scans, started `index` minutes after the first, with its
    counts' own noise, its sample's mu(E) moved by `moved` eV and its foil's not. With
    `fluorescence`, If/I0 is moved instead (the files' own If, with noise of its own too)."""
    from asapo_pipelines_xas.readers import read_scan

    source = DATA / P65_SCANS[index % len(P65_SCANS)]
    scan = read_scan(source)
    energy = np.asarray(scan.energy, dtype=float)
    i0, it = (np.asarray(scan.channels[c], dtype=float) for c in ("i0", "it"))
    rng = np.random.default_rng(index)
    mu = np.log(i0 / it)
    # the sample's edge at E + moved: mu_new(E) = mu(E - moved)
    moved_mu = np.interp(energy - moved, energy, mu)
    new_it = i0 * np.exp(-moved_mu) * (1 + NOISE * rng.standard_normal(len(energy)))
    columns = [energy, i0, new_it, scan.channels["iref"]]
    if fluorescence:
        i_f = np.asarray(scan.channels["if"], dtype=float)
        columns = [
            energy,
            i0,
            it,
            scan.channels["iref"],
            i0
            * np.interp(energy - moved, energy, i_f / i0)
            * (1 + FLUORESCENCE_NOISE * rng.standard_normal(len(energy))),
        ]
    # the first P65 scan's start, one minute later for each repeat: the order measured
    fmt = "%d-%m-%Y %H:%M:%S"
    first = STARTED.search((DATA / P65_SCANS[0]).read_text())
    assert first is not None
    start = datetime.strptime(first.group(1), fmt) + timedelta(minutes=index)
    out = []
    for line in source.read_text().splitlines():
        if STARTED.search(line):
            end = start + timedelta(seconds=50)
            line = f"# Scan started at {start.strftime(fmt)}, finished at {end.strftime(fmt)}"
        out.append(line)
    header = [line for line in out if line.startswith("#")]
    rows = np.column_stack(columns)
    body = [" ".join(f"{v:.8g}" for v in row) for row in rows]
    directory.mkdir(exist_ok=True)
    path = directory / f"20K_GOE_Fe_K_240.{index:05d}.xdi"
    names = "# enc_energy VFC01 VFC02 VFC03" + (" VFC04" if fluorescence else "")
    path.write_text("\n".join([*header[:-1], names, *body]) + "\n")
    return path


def larch_edge(path: Path, mode: str = "transmission") -> tuple[float, float]:
    """xraylarch's E0 of the file's mu, and its half-step energy: where pre_edge's normalised
    mu crosses 0.5 going up (linearly between points), the crossing nearest E0."""
    from larch import Group
    from larch.xafs import pre_edge

    from asapo_pipelines_xas.normalize import compute_mu
    from asapo_pipelines_xas.readers import read_scan

    scan = read_scan(path)
    group = Group(energy=np.asarray(scan.energy), mu=compute_mu(scan, mode))
    pre_edge(group)
    energy, norm = np.asarray(group.energy), np.asarray(group.norm)
    up = np.flatnonzero((norm[:-1] < 0.5) & (norm[1:] >= 0.5))
    crossings = energy[up] + (0.5 - norm[up]) * (energy[up + 1] - energy[up]) / (
        norm[up + 1] - norm[up]
    )
    return float(group.e0), float(crossings[np.argmin(np.abs(crossings - group.e0))])


def larch_e0(path: Path) -> float:
    return larch_edge(path)[0]


def decisions(paths: list[Path], merges: list[dict] | None = None, **advisor) -> list[dict]:
    agent = ConvergenceAgent(ConvergenceParams.model_validate({**ADVISOR, **advisor}))
    return [agent.decide(m) for m in (merges_of(paths) if merges is None else merges)]


def fluorescence_merges(paths: list[Path]) -> list[dict]:
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate({**NORMALIZE, "mode": "fluorescence"})
    merger = Merger()
    return [merger.add(normalize_scan(read_scan(p), params)).to_json() for p in paths]


def test_a_sample_whose_e0_moves_scan_after_scan_is_said_to_change_under_the_beam(tmp_path):
    paths = [repeat(tmp_path / "scans", i, -0.4 * i) for i in range(6)]
    e0s = [larch_e0(p) for p in paths]
    # the trap: each scan's E0 steps down, and the first ones agree within max_e0_shift
    assert all(b < a for a, b in pairwise(e0s)), e0s
    assert e0s[0] - e0s[3] < 1.5
    last = decisions(paths)[-1]
    assert last["action"] == "change_parameters", last["reason"]
    slope = float(np.polyfit(range(6), e0s, 1)[0])
    said = re.search(r"edge moves steadily by ([-+][0-9.]+) eV per scan", last["reason"])
    assert said, last["reason"]
    assert float(said.group(1)) == pytest.approx(slope, abs=0.05)
    assert "changing under the beam" in last["reason"]
    assert last["arguments"]["check"] == ["the sample's edge drifts from scan to scan"]
    assert last["item"] is None  # nothing is queued for a sample that changes


def test_three_scans_are_no_trend(tmp_path):
    paths = [repeat(tmp_path / "scans", i, -0.4 * i) for i in range(3)]
    assert all(d["action"] != "change_parameters" for d in decisions(paths))


def test_scatter_as_large_is_no_trend(tmp_path):
    """The same E0 offsets, shuffled: as far apart in all, but no steady direction."""
    offsets = [0.0, -1.6, -0.4, -2.0, -0.8, -1.2]
    paths = [repeat(tmp_path / "scans", i, d) for i, d in enumerate(offsets)]
    slope = abs(float(np.polyfit(range(6), [larch_e0(p) for p in paths], 1)[0]))
    assert slope * 5 > 0.5  # a fitted line spans more than the limit, yet it is scatter
    assert all("moves steadily" not in d["reason"] for d in decisions(paths)), [
        d["reason"] for d in decisions(paths)
    ]


def test_max_e0_drift_0_turns_it_off(tmp_path):
    paths = [repeat(tmp_path / "scans", i, -0.4 * i) for i in range(6)]
    assert all("moves steadily" not in d["reason"] for d in decisions(paths, max_e0_drift=0))


def test_a_pipeline_tells_it_in_its_summary(tmp_path):
    for i in range(6):
        repeat(tmp_path / "data", i, -0.4 * i)
    units = decision_units("data", NORMALIZE, ADVISOR)
    run = pipeline_command(write_pipeline(tmp_path, "drift", units), "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "action change_parameters" in run.stdout, run.stdout
    slope = float(
        np.polyfit(range(6), [larch_e0(p) for p in sorted((tmp_path / "data").iterdir())], 1)[0]
    )
    said = re.search(
        r"edge moves steadily by ([-+][0-9.]+) eV per scan \(\S+ eV over 6", run.stdout
    )
    assert said, run.stdout
    assert float(said.group(1)) == pytest.approx(slope, abs=0.05)


def test_a_drift_the_merge_screens_out_in_fluorescence_is_said(tmp_path):
    """The agent followed E0 (the maximum of dmu/dE), the merge the half-step energy. In
    fluorescence E0 jumps between features of the edge with noise: the P65 goethite moving
    by -0.5 eV a scan had E0s with no trend, while the merge rejected scans whose half-step
    energies had moved over 1 eV, and the agent said stop without a word of the drift. Both
    now follow the half-step energy."""
    paths = [repeat(tmp_path / "scans", i, -0.5 * i, fluorescence=True) for i in range(6)]
    edges = [larch_edge(p, "fluorescence") for p in paths]
    e0s, halves = [e for e, _ in edges], [h for _, h in edges]
    e0_slope = float(np.polyfit(range(6), e0s, 1)[0])
    half_slope = float(np.polyfit(range(6), halves, 1)[0])
    # the trap, by xraylarch: E0 scatters by more than the drift, the half-step energy follows it
    assert np.std(np.diff(e0s)) > 1.0 > np.std(np.diff(halves)), (e0s, halves)
    assert half_slope == pytest.approx(-0.5, abs=0.05)
    assert abs(e0_slope) < 0.25, e0s
    merges = fluorescence_merges(paths)
    # the merge screens the drift out by the half-step energy, as before
    reasons = [r for m in merges[-1:] for x in m["rejected"] for r in x["reasons"]]
    assert any("half-step energy" in r for r in reasons), reasons
    last = decisions(paths, merges)[-1]
    assert last["action"] == "change_parameters", last["reason"]
    said = re.search(r"edge moves steadily by ([-+][0-9.]+) eV per scan", last["reason"])
    assert said, last["reason"]
    assert float(said.group(1)) == pytest.approx(half_slope, abs=0.05)
    assert "its half-step energy" in last["reason"]


def test_edge_scatter_in_fluorescence_is_no_trend(tmp_path):
    """The same repeats unmoved: E0 alternates by 3.5 eV between the two real scans' edges, a
    fitted line of it spans more than max_e0_drift, and it is still no drift."""
    paths = [repeat(tmp_path / "scans", i, 0.0, fluorescence=True) for i in range(6)]
    e0s = [larch_edge(p, "fluorescence")[0] for p in paths]
    assert abs(np.polyfit(range(6), e0s, 1)[0]) * 5 > 0.5, e0s  # a line through E0 spans more
    merges = fluorescence_merges(paths)
    assert merges[-1]["n_merged"] + len(merges[-1]["rejected"]) == 6  # no copies among them
    assert all(
        "moves steadily" not in d["reason"] for d in decisions(paths, fluorescence_merges(paths))
    )
