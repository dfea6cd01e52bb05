"""A glitch in one repeat (the outside tester's: +0.05, +0.12, +0.05 in mu at three points near
7400 eV, 15 % of the edge step) went into the merge unnoticed: its scan's noise rose by 2 %, and
the merge of 4 repeats carried a bump of +0.037 in norm. The merge now compares each repeat with
the others on its grid (after alignment), warns naming the scan and the energies, leaves those
points out of the mean, and records them with the merge (`glitches`) and in the NeXus file.

The repeats are the real P65 scans and copies of them with their own noise (seeded), made at test
time; the glitch is injected into one copy's transmitted counts. The reference, the merge without
the glitch, is made by the unit itself from the same files without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_agent_procs import NORMALIZE, merges_of, noisy_copy
from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA, P65_ENERGY, P65_I0, P65_IT, P65_SCANS, larch_e0, p65_variant

#: the tester's glitch, added to mu at three consecutive points from GLITCH_AT eV
GLITCH = (0.05, 0.12, 0.05)
GLITCH_AT = 7400.0
#: each copy's counts changed by this relative noise (the tester's synthetic repeats' order)
COPY_NOISE = 1e-3
#: eV either side of E0: the steep edge, where a residual misalignment made false glitches
EDGE = 30.0


def repeats(directory: Path, count: int) -> list[Path]:
    """The two real P65 scans, then noisy copies of them (seeded by their index)."""
    directory.mkdir()
    paths = [Path(shutil.copy(DATA / name, directory)) for name in P65_SCANS[:count]]
    return paths + [noisy_copy(directory, i, COPY_NOISE) for i in range(2, count)]


def add_glitch(path: Path) -> np.ndarray:
    """The tester's glitch in the file's mu = ln(I0/It) (It divided by exp(glitch)); the
    energies it is at."""
    lines = path.read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    energy = np.array([float(lines[i].split()[P65_ENERGY]) for i in rows])
    first = int(np.searchsorted(energy, GLITCH_AT))
    for row, bump in zip(rows[first : first + len(GLITCH)], GLITCH, strict=True):
        cells = lines[row].split()
        cells[P65_IT] = repr(float(cells[P65_IT]) / float(np.exp(bump)))
        lines[row] = " ".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return energy[first : first + len(GLITCH)]


def run(tmp_path: Path, name: str) -> tuple[Path, str]:
    units = scan_chain("data", NORMALIZE, {})
    pipeline = write_pipeline(tmp_path, name, units)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    logs = pipeline_command(pipeline, "logs", "merge")
    assert logs.returncode == 0, logs.stderr
    return pipeline, logs.stdout + logs.stderr


def newest_merge(pipeline: Path) -> dict:
    out = pipeline_command(pipeline, "tail", "merged", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])["value"]


def test_a_glitch_in_one_of_four_repeats_is_named_and_left_out_of_the_merge(tmp_path):
    paths = repeats(tmp_path / "data", 4)
    clean = merges_of(paths)[-1]
    glitched = paths[2]
    at = add_glitch(glitched)
    pipeline, log = run(tmp_path, "glitch")

    # the warning names the scan and the energies
    energies = ", ".join(f"{e:.1f}" for e in at)
    assert f"{glitched.name} has a glitch at {energies} eV" in log, log
    assert "those points are left out of the merge" in log
    merged = newest_merge(pipeline)
    (found,) = merged["glitches"]
    assert found["file"] == glitched.name
    assert found["excluded"] is True
    assert np.allclose(found["energies"], at, atol=0.5)
    assert merged["settings"]["deglitch"]["threshold"] > 0

    # the merged mu at the glitch is the clean merge's, within the repeats' noise there
    mu = np.array(merged["arrays"]["mu"])
    energy = np.array(merged["arrays"]["energy"])
    assert np.array_equal(energy, np.array(clean["arrays"]["energy"]))
    reference = np.array(clean["arrays"]["mu"])
    noise = np.array(clean["arrays"]["mu_stderr"])
    near = np.abs(energy - GLITCH_AT) < 5
    assert np.all(np.abs(mu[near] - reference[near]) < 2 * noise[near])


def test_the_clean_real_repeats_raise_no_glitch(tmp_path):
    """The bundled scans and copies of them: no point flagged, nothing warned, the merge as
    merge_groups makes it."""
    repeats(tmp_path / "data", 4)
    pipeline, log = run(tmp_path, "clean")
    assert "glitch" not in log
    assert "glitches" not in newest_merge(pipeline)
    for merged in merges_of(sorted((tmp_path / "data").iterdir())):
        assert "glitches" not in merged


def test_with_two_repeats_the_glitch_is_reported_for_both_and_nothing_left_out(tmp_path):
    """A median of two cannot say which repeat is wrong: both are named, the energies given,
    and the merge is the plain mean."""
    paths = repeats(tmp_path / "data", 2)
    at = add_glitch(paths[1])
    pipeline, log = run(tmp_path, "two")
    assert f"{paths[0].name} and {paths[1].name} differ at" in log, log
    assert "cannot tell which one has the glitch" in log
    (found,) = newest_merge(pipeline)["glitches"]
    assert found["excluded"] is False
    assert np.allclose(found["energies"], at, atol=0.5)


def test_the_nexus_merge_entry_records_the_glitch(tmp_path):
    pytest.importorskip("asapo_pipelines_nexus")
    import h5py

    paths = repeats(tmp_path / "data", 3)
    add_glitch(paths[2])
    units = {
        **scan_chain("data", NORMALIZE, {}),
        "writer": {
            "unit": "nexus.writer",
            "params": {"file": "results.nxs"},
            "inputs": {"spectra": "spectra", "merged": "merged"},
        },
    }
    pipeline = write_pipeline(tmp_path, "glitch-nexus", units)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    with h5py.File(tmp_path / "results.nxs", "r", swmr=True, locking=False) as f:
        merges = [f[k] for k in f if "merge" in f[k]["title"][()].decode()]
        newest = max(merges, key=lambda e: int(e.name[6:]))
        (found,) = json.loads(newest["process/results/glitches"][()])
        parameters = json.loads(newest["process/parameters/data"][()])
    assert found["file"] == paths[2].name
    assert "median of the other repeats" in parameters["deglitch"]["rule"]


def shifted_repeats(directory: Path, count: int, seed: int) -> list[Path]:
    """`count` repeats of the real P65 scans (in turn), each with its energies moved by a
    seeded 0.05-0.1 eV either way and its own seeded noise of 1e-4 to 3e-4 of the edge step:
    clean repeats as the reviewer measured them after alignment. The merge is asked not to
    align them, so the shifts stay as the residual misalignment alignment leaves."""
    from larch import Group
    from larch.xafs import pre_edge

    directory.mkdir()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        source = P65_SCANS[i % len(P65_SCANS)]
        data = np.loadtxt(DATA / source)
        group = Group(energy=data[:, P65_ENERGY], mu=np.log(data[:, P65_I0] / data[:, P65_IT]))
        pre_edge(group)
        # mu = ln(I0/It): a relative change of It is that change in mu, here a share of the step
        noise = rng.uniform(1e-4, 3e-4) * float(group.edge_step)
        shift = rng.uniform(0.05, 0.1) * rng.choice([-1.0, 1.0])
        path = directory / f"20K_GOE_Fe_K_240.{i:05d}.xdi"
        paths.append(p65_variant(source, path, seed=seed * 10 + i, noise=noise, shift=shift))
    return paths


#: the reviewer's 5 trials, and seed 19: with the real (less steep) goethite edge, of 60 trials
#: the old screen left out the point at E0 (7128.4 eV, 10.6 spreads) in this one of 4 repeats
@pytest.mark.parametrize("count", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 19])
def test_clean_repeats_misaligned_by_a_tenth_of_an_ev_raise_no_glitch_at_the_edge(
    tmp_path, count, seed
):
    """The reviewer's false positives: points on the steep edge flagged and left out (kinks
    where E0 is found) because a 0.05-0.1 eV misalignment there differs by |dmu/dE| x dE, far
    above the spread of the flat data in the window. No merge of these has a glitch within
    EDGE eV of its E0 (xraylarch's). (The scans' last point, where the shifted repeats end
    unevenly, is `test_clean_shifted_repeats_raise_no_glitch_at_the_scans_last_point`.)"""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import MergeParams, NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger(MergeParams(align="none"))
    for path in shifted_repeats(tmp_path / "data", count, seed):
        merged = merger.add(normalize_scan(read_scan(path), params)).to_json()
        e0 = larch_e0(merged["arrays"]["energy"], merged["arrays"]["mu"])
        at_edge = [
            g for g in merged.get("glitches", []) if any(abs(e - e0) < EDGE for e in g["energies"])
        ]
        assert not at_edge, (e0, at_edge)
    assert merged["settings"]["deglitch"]["energy_tolerance"] > 0


#: the trials of the scans' last point: of seeds 0-29, those in which the old screen flagged it
#: in a merge of 3 or 4 repeats (10.5-16.7 spreads), naming a clean file and leaving a good
#: point out; the new screen passed all 30 (each seed is some 10 s of CI, so not all are kept)
LAST_POINT_SEEDS = (3, 7, 16, 22, 24, 28)


@pytest.mark.parametrize("seed", LAST_POINT_SEEDS)
def test_clean_shifted_repeats_raise_no_glitch_at_the_scans_last_point(tmp_path, seed):
    """The real P65 scans end with the mono at rest: some 17 readings within 0.04 eV. Repeats
    shifted by 0.05-0.1 eV end unevenly on the merge's grid, and the screen's cubic spline
    carried the noise of a repeat's resting readings into the step before them, on the grid's
    last point: a false glitch there, named in the log and left out of the merge. No merge of
    2, 3 or 4 of these repeats (each added in turn, as the unit merges them) has a glitch."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import MergeParams, NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger(MergeParams(align="none"))
    for count, path in enumerate(shifted_repeats(tmp_path / "data", 4, seed), start=1):
        merged = merger.add(normalize_scan(read_scan(path), params)).to_json()
        last = merged["arrays"]["energy"][-1]
        found = [(g["energies"], g["deviation"]) for g in merged.get("glitches", [])]
        assert not found, f"{count} repeats, last energy {last:.2f} eV: {found}"


def larch_merge(paths: list[Path], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xraylarch's merge (`merge_groups`, cubic) of the files' mu = ln(I0/It) on `grid`: the
    mean and its standard error (merge_groups' spread is the population one)."""
    from larch import Group
    from larch.io import merge_groups

    groups = []
    for path in paths:
        data = np.loadtxt(path)
        groups.append(
            Group(energy=data[:, P65_ENERGY], mu=np.log(data[:, P65_I0] / data[:, P65_IT]))
        )
    master = Group(energy=grid, mu=np.zeros_like(grid))
    out = merge_groups(
        groups, master=master, xarray="energy", yarray="mu", kind="cubic", trim=False
    )
    return np.asarray(out.mu), np.asarray(out.mu_std) / np.sqrt(len(paths) - 1)


#: 3 shifted repeats, their noise up to 3 times another's: the old screen named a clean file
#: in 19 of these 20 seeds (in 5 splitting the glitch over two files); each seed is about 1 s
ATTRIBUTION_SEEDS = tuple(range(20))


@pytest.mark.parametrize("seed", ATTRIBUTION_SEEDS)
def test_a_glitch_in_one_of_three_shifted_repeats_is_named_on_that_file_only(tmp_path, seed):
    """With 3 repeats the median of the other two is their mean, which carries half of a
    glitch: a clean repeat quieter than the glitched one scored higher over its own spread,
    and was named (a good point of it left out, the glitch merged). The glitch injected in
    file 00001 is named on 00001 alone, at its energies, and the merge there is xraylarch's
    merge of the two clean files within its standard error (only 00001's points left out: a
    clean file's left out instead puts half the glitch, 50 or more of these, into the merge)."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import MergeParams, NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    paths = shifted_repeats(tmp_path / "data", 3, seed)
    glitched = paths[1]
    # the merge without 00001 at the glitch: xraylarch's of the other, clean files
    others = [path for path in paths if path != glitched]
    at = add_glitch(glitched)
    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger(MergeParams(align="none"))
    for path in paths:
        merged = merger.add(normalize_scan(read_scan(path), params)).to_json()

    named = [(g["file"], g["energies"], g["deviation"]) for g in merged.get("glitches", [])]
    assert [file for file, _, _ in named] == [glitched.name], named
    (found,) = merged["glitches"]
    assert found["excluded"] is True
    assert found["deviation"] > 10
    found_at = np.array(found["energies"])
    # each injected point found, and nothing found beside them (one grid step, 0.6 eV, away)
    assert all(np.min(np.abs(found_at - e)) < 0.5 for e in at), (found_at, at)
    assert np.all((found_at > at[0] - 0.6) & (found_at < at[-1] + 0.6)), (found_at, at)

    energy = np.array(merged["arrays"]["energy"])
    mu = np.array(merged["arrays"]["mu"])
    reference, stderr = larch_merge(others, energy)
    near = np.isin(np.round(energy, 2), found_at)
    assert np.all(np.abs(mu[near] - reference[near]) <= stderr[near]), (
        mu[near] - reference[near],
        stderr[near],
    )
