"""A merge that merges nothing, in a real run (`pipeline run`, then `--resume` as scans come in:
scan files, xraylarch's normalisation, the XAS merge and the NeXus writer, each a worker
process). The group is merged first; a later scan disagrees with it and no majority tells which
is the measurement, so the merge unit merges nothing and stands by no earlier merge. The writer
wrote no entry for such a merge: the root's `default` (what NeXpy, silx and h5web open) stayed
on the earlier merge, an old spectrum shown as the current result. Now the nothing-merged entry
is the newest merge, says why and holds no spectrum; a later merge of scans moves `default` on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR

pytest.importorskip("asapo_pipelines_xas")

PIPELINE = """\
pipeline: nexus-nothing-merged
units:
  scans:     {unit: xas.scan-files, params: {directory: data/, pattern: "20K_GOE_*.xdi"},
              outputs: {scans: raw-scans}}
  normalize: {unit: xas.normalize, inputs: {scans: raw-scans}, outputs: {spectra: spectra},
              params: {mode: transmission, autobk: {rbkg: 1, kweight: 2},
                       noise: {rmin: 15, rmax: 25, kweight: 2, kmin: 2}}}
  merge:     {unit: xas.merge, inputs: {spectra: spectra}, outputs: {merged: merged}}
  writer:    {unit: nexus.writer, params: {file: results/p65.nxs},
              inputs: {scans: raw-scans, spectra: spectra, merged: merged}}
"""
#: the P65 file columns (SOURCES.md): I0 and It
I0, IT = 10, 11
#: a repeat of the second scan whose edge step is twice its own (It -> It^2 / I0 doubles
#: mu = ln(I0 / It), leaving E0 and the reference foil as they were): it disagrees with the
#: first scan, and with two scans no majority tells which one is the measurement. With noise
#: of its own (about the P65 scans' 1e-4 in mu): without it, it is the second scan's numbers
#: changed, which the merge tells as a copy of it (`xas.merge`'s re-exported copies)
DISAGREEING = "20K_GOE_Fe_K_240.00001.xdi"
#: its own noise, relative, on It: 1e-4 in mu (seeded)
OWN_NOISE = 1e-4
#: the second scan as measured, read last: it agrees with the first, a majority of two
AGREEING = "20K_GOE_Fe_K_240.00002.xdi"


def _doubled_edge_step(source: Path, target: Path) -> None:
    rng = np.random.default_rng(65)
    lines = []
    for line in source.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        values = line.split()
        i0, it = float(values[I0]), float(values[IT])
        values[IT] = repr(it * it / i0 * (1 + rng.normal(0, OWN_NOISE)))
        lines.append(" ".join(values))
    target.write_text("\n".join(lines) + "\n")


def _snapshot(work: Path, name: str, *resume: str) -> Path:
    """Run (or resume) the pipeline over data/ and keep a copy of the file it leaves (and
    what `pipeline run` printed, beside it)."""
    done = pipeline_ok(work, "run", *resume, "p.pipeline.yaml")
    copy = work / f"{name}.nxs"
    shutil.copy(work / "results" / "p65.nxs", copy)
    copy.with_suffix(".out").write_text(done.stdout)
    return copy


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The NeXus file after each of three sessions: `merged` (the first scan: one merged),
    `nothing` (a disagreeing scan came: nothing merged), `again` (a scan agreeing with the
    first came: two of three merged)."""
    work = tmp_path_factory.mktemp("nothing-merged")
    (work / "data").mkdir()
    (work / "p.pipeline.yaml").write_text(PIPELINE)
    shutil.copy(DATA / P65_SCANS[0], work / "data" / P65_SCANS[0])
    merged = _snapshot(work, "merged")
    _doubled_edge_step(DATA / P65_SCANS[1], work / "data" / DISAGREEING)
    nothing = _snapshot(work, "nothing", "--resume")
    shutil.copy(DATA / P65_SCANS[1], work / "data" / AGREEING)
    again = _snapshot(work, "again", "--resume")
    # the night's backup of the run's file put back: it lacks the later merges, which the
    # next start writes again from the run's stored inputs, the nothing-merged one too
    shutil.copy(merged, work / "results" / "p65.nxs")
    restored = _snapshot(work, "restored", "--resume")
    return {"merged": merged, "nothing": nothing, "again": again, "restored": restored}


def _merges(f: h5py.File) -> dict[int, h5py.Group]:
    """Message id in the run's merged stream -> the merge entry written from it."""
    found = {}
    for entry in f.values():
        if text(entry.attrs.get(CONTENT_ATTR, "")) == "xas/merged":
            inputs = json.loads(text(entry["provenance/inputs/data"][()]))
            found[inputs["message"]["id"]] = entry
    return found


def _json(entry: h5py.Group, path: str) -> Any:
    return json.loads(text(entry[path][()]))


def _default(f: h5py.File) -> h5py.Group:
    """The entry the root's `default` names, as a viewer finds it."""
    entry = f[text(f.attrs["default"])]
    assert text(entry.attrs["NX_class"]) == "NXentry"
    return entry


def _plottable(f: h5py.File) -> h5py.Dataset | None:
    """What a viewer plots, found as the NeXus manual's "find the plottable data" says: the
    root's `default` names an NXentry, its `default` an NXdata (else its first NXdata), whose
    `signal` names the data; None when the entry has no NXdata."""
    entry = _default(f)
    name = text(entry.attrs["default"]) if "default" in entry.attrs else None
    if name is None:
        name = next(
            (n for n, g in entry.items() if text(g.attrs.get("NX_class", "")) == "NXdata"), None
        )
    if name is None:
        return None
    data = entry[name]
    assert text(data.attrs["NX_class"]) == "NXdata"
    return data[text(data.attrs["signal"])]


def _reproduced(f: h5py.File, merge: h5py.Group) -> tuple[np.ndarray, np.ndarray]:
    """The merge of its spectra's entries, again, with the XAS plugin's `merge_mu`
    (xraylarch's merge_groups): each spectrum's energy plus its shift, and its mu."""
    from asapo_pipelines_xas.merge import merge_mu

    members = _json(merge, "provenance/inputs/data")["merged"]
    spectra = [f[m["entry"]]["data"] for m in members]
    shifts = merge["process/results/alignment_shift"][()]
    grid, mean, _ = merge_mu(
        [s["energy"][()] + shift for s, shift in zip(spectra, shifts, strict=True)],
        [s["mu"][()] for s in spectra],
    )
    return grid, mean


def test_a_merge_of_nothing_becomes_the_default_and_says_why(files):
    with h5py.File(files["merged"], "r", swmr=True, locking=False) as f:
        merges = _merges(f)
        assert sorted(merges) == [1]
        assert _default(f).name == merges[1].name
        assert int(merges[1]["process/results/n_merged"][()]) == 1
        first = text(merges[1]["title"][()])
        # every title leads with its pipeline and run
        run = f"{text(merges[1].attrs['asapo_pipeline'])} {text(merges[1].attrs['asapo_run'])}"
        assert run == "nexus-nothing-merged r1"
        assert first.startswith(f"{run}: merge 1 of "), first
        assert first.endswith(" (1 scan)"), first
        label = first.removeprefix(f"{run}: merge 1 of ").removesuffix(" (1 scan)")
        grid, mean = _reproduced(f, merges[1])
        np.testing.assert_array_equal(_plottable(f)[()], mean)
        np.testing.assert_array_equal(merges[1]["data/energy"][()], grid)

    with h5py.File(files["nothing"], "r", swmr=True, locking=False) as f:
        # what a viewer opens is the merge unit's result now: nothing merged, not merge 1
        assert "nothing merged" in text(_default(f)["title"][()])
        merges = _merges(f)
        assert sorted(merges) == [1, 2]  # the earlier merge is kept, not rewritten
        nothing = merges[2]
        assert _default(f).name == nothing.name
        title = text(nothing["title"][()])
        assert title == (
            f"{run}: merge 2 of {label}: nothing merged (no majority: 2 scans disagree in E0 or "
            "edge step)"
        )
        # why, in the merge's own words and each scan's
        results = nothing["process/results"]
        reason = text(results["no_majority"][()])
        assert reason.endswith("no majority agrees with one of them, so nothing is merged")
        notes = nothing["notes"]
        assert text(notes.attrs["NX_class"]) == "NXnote"
        why = text(notes["data"][()])
        assert reason in why
        assert P65_SCANS[0] in why
        assert DISAGREEING in why
        # no spectrum: no NXdata, no default into one, nothing to plot
        assert "default" not in nothing.attrs
        classes: list[str] = []
        nothing.visititems(lambda _, obj: classes.append(text(obj.attrs.get("NX_class", ""))))
        assert "NXdata" not in classes
        assert not any(isinstance(obj, h5py.Dataset) and obj.size > 1 for obj in _all(nothing))
        assert _plottable(f) is None
        # provenance like any merge: the merge unit, the run, the scans it screened out
        assert int(results["n_merged"][()]) == 0
        assert json.loads(text(results["accepted"][()])) == []
        rejected = json.loads(text(results["rejected"][()]))
        assert sorted(r["scan"].rpartition("key:")[2] for r in rejected) == sorted(
            [P65_SCANS[0], DISAGREEING]
        )
        assert all(r["reasons"][0].startswith("no majority: ") for r in rejected)
        prov = nothing["provenance"]
        assert text(prov["unit"][()]) == "xas.merge"
        assert text(prov["run"][()]) == "r1"
        assert text(nothing.attrs["asapo_run"]) == "r1"
        assert "align" in _json(prov, "parameters/data")
        assert _json(prov, "source_files/data") == []
        assert sorted(_json(prov, "rejected_source_files/data")) == sorted(
            [P65_SCANS[0], DISAGREEING]
        )

    with h5py.File(files["again"], "r", swmr=True, locking=False) as f:
        merges = _merges(f)
        assert sorted(merges) == [1, 2, 3]
        later = merges[3]
        # a later merge of scans is the result again, and what a viewer plots
        assert _default(f).name == later.name
        assert int(later["process/results/n_merged"][()]) == 2
        accepted = json.loads(text(later["process/results/accepted"][()]))
        assert sorted(a.rpartition("key:")[2] for a in accepted) == sorted([P65_SCANS[0], AGREEING])
        grid, mean = _reproduced(f, later)
        np.testing.assert_array_equal(_plottable(f)[()], mean)
        np.testing.assert_array_equal(later["data/energy"][()], grid)
        # the nothing-merged entry is still there, as it was
        assert "data" not in merges[2]
        assert "nothing merged" in text(merges[2]["title"][()])


def _all(group: h5py.Group) -> list[Any]:
    found: list[Any] = []
    group.visititems(lambda _, obj: found.append(obj))
    return found


def test_nexus_readers_following_default_to_a_merge_of_nothing_do_not_fail(files):
    """nexusformat (NeXpy's library) and silx follow `default` to the nothing-merged entry
    and find nothing to plot there, without an error; the entry passes nexusformat's
    base-class validation."""
    nexus = pytest.importorskip("nexusformat.nexus")
    validate = pytest.importorskip("nexusformat.nexus.validate")
    path = files["nothing"]
    root = nexus.nxload(str(path), "r")
    try:
        name = str(root.attrs["default"])
        entry = root[name]
        assert "nothing merged" in str(entry["title"])
        assert entry.plottable_data is None
        assert "nothing merged" in str(entry["notes/data"]).lower()
    finally:
        root.nxfile.close()
    assert validate.validate_file(str(path), path=name)[1] == 0
    try:
        from silx.io.nxdata import get_default
    except ImportError:
        return
    with h5py.File(path, "r", locking=False) as f:
        assert get_default(f) is None


def test_an_older_copy_gets_the_merge_of_nothing_back_once(files):
    """The run's file put back as an older copy (the first session's): the entries it lacks
    are written again from the run's stored inputs, the merge of nothing among them, each
    once, and the root's `default` is the newest merge again, not the copy's."""
    out = files["restored"].with_suffix(".out").read_text()
    assert "entries_rebuilt_in_file" in out, out
    with (
        h5py.File(files["again"], "r", swmr=True, locking=False) as whole,
        h5py.File(files["restored"], "r", swmr=True, locking=False) as f,
    ):
        merges = _merges(f)
        assert sorted(merges) == [1, 2, 3]
        titles = sorted(text(e["title"][()]) for e in f.values())
        assert titles == sorted(text(e["title"][()]) for e in whole.values())  # none twice
        assert "data" not in merges[2]
        assert "nothing merged" in text(merges[2]["title"][()])
        assert text(merges[2]["notes/data"][()]) == text(_merges(whole)[2]["notes/data"][()])
        assert _default(f).name == merges[3].name
