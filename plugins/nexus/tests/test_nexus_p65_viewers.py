"""The P65 example's NeXus file as a viewer and a reader open it (`pipeline run` of the example,
then `pipeline run --fresh`: one file holding two runs, then a third start that only reopens
it): the root names the entry to plot, the times say what they know, a merge records the energy
shift it gave each scan, and the titles tell the entries apart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _run(work: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(work / "cache")
    # the local executor starts `pipeline worker` tasks from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pipeline")), "run", *args, EXAMPLE.name],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict[str, Path]:
    """`two_runs`: the file after r1 and r2 (a copy); `reopened`: that file once its root lost
    its `default` (as a file of an older writer has none) and the writer opened it again."""
    work = tmp_path_factory.mktemp("p65-viewers")
    (work / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    _run(work)
    _run(work, "--fresh")
    nxs = work / "results" / "p65.nxs"
    two_runs = work / "two-runs.nxs"
    shutil.copy(nxs, two_runs)
    with h5py.File(nxs, "a") as f:
        if "default" in f.attrs:
            del f.attrs["default"]
        entries = len(f)
    resumed = _run(work)  # the same run resumed: nothing new to write
    with h5py.File(nxs, "r") as f:
        assert len(f) == entries, resumed
    return {"two_runs": two_runs, "reopened": nxs, "data": work / "data"}


def _number(name: str) -> int:
    return int(name.removeprefix("entry"))


def _newest_merge(f: h5py.File) -> str:
    merges = [n for n, e in f.items() if _text(e.attrs["asapo_content_type"]) == "xas/merged"]
    return max(merges, key=_number)


def _plottable(f: h5py.File) -> h5py.Dataset:
    """What a viewer plots, found as the NeXus manual says: NXroot@default names an NXentry,
    its @default an NXdata, whose @signal and @axes name the datasets."""
    entry = f[_text(f.attrs["default"])]
    assert _text(entry.attrs["NX_class"]) == "NXentry"
    data = entry[_text(entry.attrs["default"])]
    assert _text(data.attrs["NX_class"]) == "NXdata"
    signal = data[_text(data.attrs["signal"])]
    axis = data[_text(data.attrs["axes"])]
    assert signal.shape == axis.shape
    return signal


def test_a_viewer_opening_the_file_plots_the_newest_merge(example):
    with h5py.File(example["two_runs"], "r", swmr=True, locking=False) as f:
        newest = _newest_merge(f)
        # the newest entry is the agent's decision on that merge, which holds nothing to plot
        assert is_decision(f[max(f, key=_number)])
        assert _text(f.attrs["default"]) == newest
        assert _text(f[newest].attrs["asapo_run"]) == "r2"
        assert _plottable(f).name == f"/{newest}/data/mu"
        root = {k: _text(v) for k, v in f.attrs.items()}
        assert root["NX_class"] == "NXroot"
        # where the file was written (this one was copied here after), whatever the worker's
        # working directory was
        written = Path(root["file_name"])
        assert written.is_absolute(), written
        assert written.name == "p65.nxs"
        assert root["HDF5_Version"] == h5py.version.hdf5_version
        assert root["h5py_version"] == h5py.version.version
        assert root["creator"].startswith("asapo-pipelines")
        assert datetime.fromisoformat(root["file_time"]).utcoffset() is not None
        # every NXdata names its signal and axes, and they are there
        groups: list[h5py.Group] = []
        f.visititems(
            lambda _, obj: (
                groups.append(obj)
                if isinstance(obj, h5py.Group) and _text(obj.attrs.get("NX_class")) == "NXdata"
                else None
            )
        )
        assert groups
        for group in groups:
            assert {"signal", "axes"} <= set(group.attrs), group.name
            assert _text(group.attrs["signal"]) in group, group.name
            assert _text(group.attrs["axes"]) in group, group.name


def test_a_writer_reopening_a_file_points_its_root_at_the_newest_merge(example):
    with h5py.File(example["reopened"], "r", swmr=True, locking=False) as f:
        assert _text(f.attrs["default"]) == _newest_merge(f)
        _plottable(f)


def test_times_from_the_scan_files_are_kept_as_written_and_say_their_zone_is_unknown(example):
    from asapo_pipelines_xas.readers import read_scan

    with h5py.File(example["two_runs"], "r", swmr=True, locking=False) as f:
        scans = [e for e in f.values() if _text(e.attrs["asapo_content_type"]) == "xas/scan"]
        assert len(scans) == 4
        for entry in scans:
            meta = json.loads(_text(entry["asapo/metadata"][()]))
            header = read_scan(example["data"] / meta["file"]).metadata
            for field in ("start_time", "end_time"):
                assert _text(entry[field][()]) == header[field]
                # the P65 header names no zone: none is invented, and the entry says so
                assert datetime.fromisoformat(header[field]).utcoffset() is None
                assert _text(entry[field].attrs["time_zone"]) == "unknown"
        for entry in f.values():
            if is_decision(entry):
                # a decision starts when the agent made it, a time of its own, in UTC
                start = _text(entry["start_time"][()])
                assert datetime.fromisoformat(start).utcoffset() is not None
            else:
                assert "time_zone" in entry["start_time"].attrs
            # the times the writer makes itself carry their UTC offset
            stamps = [entry["provenance/date"], entry["provenance/message_time"]]
            stamps += [entry["process/date"]] if "process" in entry else []
            for stamp in stamps:
                assert datetime.fromisoformat(_text(stamp[()])).utcoffset() is not None


def test_a_merge_records_the_shift_of_each_scan_and_is_reproduced_from_the_file(example):
    from asapo_pipelines_xas.merge import merge_mu

    with h5py.File(example["two_runs"], "r", swmr=True, locking=False) as f:
        merges = [e for e in f.values() if _text(e.attrs["asapo_content_type"]) == "xas/merged"]
        assert len(merges) == 4
        for entry in merges:
            merged = json.loads(_text(entry["provenance/inputs/data"][()]))["merged"]
            shifts = entry["process/results/alignment_shift"]
            assert _text(shifts.attrs["units"]) == "eV"
            assert shifts.shape == (len(merged),)
            accepted = json.loads(_text(entry["process/results/accepted"][()]))
            assert [m["scan"] for m in merged] == accepted
            # the merge, again: each merged spectrum's energy plus its shift, and its mu
            spectra = [f[m["entry"]]["data"] for m in merged]
            grid, mean, _ = merge_mu(
                [s["energy"][()] + shift for s, shift in zip(spectra, shifts[()], strict=True)],
                [s["mu"][()] for s in spectra],
            )
            np.testing.assert_array_equal(grid, entry["data/energy"][()])
            np.testing.assert_array_equal(mean, entry["data/mu"][()])
        # the second scan was aligned onto the first (a shift that is not zero)
        assert any(np.any(e["process/results/alignment_shift"][()] != 0) for e in merges)


def test_titles_tell_the_entries_of_two_runs_apart(example):
    with h5py.File(example["two_runs"], "r", swmr=True, locking=False) as f:
        entries = list(f.values())
        titles = [_text(e["title"][()]) for e in entries]
        # each run wrote its scans, spectra, merges and the agent's decisions on the merges
        kinds = Counter(
            (_text(e.attrs["asapo_run"]), is_decision(e), _text(e.attrs["asapo_content_type"]))
            for e in entries
        )
        by_run = {run: {k[1:]: n for k, n in kinds.items() if k[0] == run} for run in ("r1", "r2")}
        assert by_run["r1"] == by_run["r2"]
        assert sum(kinds.values()) == len(entries)
        assert by_run["r1"][True, "plan/suggestion"] == by_run["r1"][False, "xas/merged"] >= 1
        assert len(set(titles)) == len(titles), sorted(titles)
        for entry, title in zip(entries, titles, strict=True):
            run = f"{_text(entry.attrs['asapo_pipeline'])} {_text(entry.attrs['asapo_run'])}"
            assert title.startswith(f"{run}: ")


def test_a_merge_carries_an_uncertainty_only_when_it_has_a_spread(example):
    """A merge of one scan has no spread: its NXdata has no `mu_errors` (NXdata's
    `<signal>_errors` only when known; it was all NaN), and readers that plot it with its
    errors (silx, nexusformat) find none. A merge of two scans carries the standard error
    of their mean, as xraylarch's merge gives it."""
    from asapo_pipelines_xas.merge import merge_mu
    from nexusformat.nexus import nxload
    from silx.io.nxdata import get_default

    singles = []
    with h5py.File(example["two_runs"], "r", swmr=True, locking=False) as f:
        for name, entry in f.items():
            if _text(entry.attrs["asapo_content_type"]) != "xas/merged":
                continue
            merged = json.loads(_text(entry["provenance/inputs/data"][()]))["merged"]
            if len(merged) == 1:
                singles.append(name)
                assert "mu_errors" not in entry["data"], name
                nxdata = get_default(entry)
                assert nxdata is not None, name
                assert nxdata.is_valid, name
                assert nxdata.errors is None, name
                continue
            shifts = entry["process/results/alignment_shift"][()]
            spectra = [f[m["entry"]]["data"] for m in merged]
            _, _, std = merge_mu(
                [s["energy"][()] + shift for s, shift in zip(spectra, shifts, strict=True)],
                [s["mu"][()] for s in spectra],
            )
            errors = entry["data/mu_errors"][()]
            assert np.isfinite(errors).all(), name
            np.testing.assert_allclose(errors, std / np.sqrt(len(merged) - 1))
    assert len(singles) == 2  # the first merge of each run
    # NeXpy's library plots a merge of one scan, without errors
    root = nxload(str(example["two_runs"]), "r")
    for name in singles:
        plotted = root[name].plottable_data
        assert plotted is not None, name
        assert plotted.nxerrors is None, name
