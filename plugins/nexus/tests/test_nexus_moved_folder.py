"""A project folder (the pipeline file, its `.pipeline-data` store and results/) moved or
copied goes on as itself: the NeXus writer knows the run's file there as the run's own.

It knew the file by its absolute path only. In a copy (or a moved folder), the documented way
out of a damaged file (move it aside, `pipeline run --resume`) rebuilt nothing: the writer took
its own file for another one, wrote a new empty file and the run ended `completed`, exit 0;
and the refusal before that sent the user to the original folder's pipeline file, whose resume
acts on that folder's store and file. A copy whose file is intact counted its entries from
zero. These tests run the P65 example on the bundled data with `pipeline run`, as a user does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from nexus_cli import PIPELINE_BIN, pipeline, pipeline_env, pipeline_ok, source_files
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR, KEY_ATTR, is_decision

from leaked_processes import stop_run

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _project(folder: Path) -> Path:
    """A project folder with the P65 example as p.pipeline.yaml and the two repeats; run once."""
    (folder / "data").mkdir(parents=True)
    for name in P65_SCANS:
        shutil.copy(DATA / name, folder / "data")
    shutil.copy(EXAMPLE, folder / "p.pipeline.yaml")
    pipeline_ok(folder, "run", "p.pipeline.yaml")
    return folder / "results" / "p65.nxs"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(nxs: Path) -> dict[str, str]:
    """key -> content type of each complete entry (the key is set last), `decision` for an
    agent's decision (told by its `decision` group)."""
    with h5py.File(nxs, "r", swmr=True, locking=False) as f:
        return {
            _text(g.attrs[KEY_ATTR]): "decision"
            if is_decision(g)
            else _text(g.attrs.get(CONTENT_ATTR, ""))
            for g in f.values()
            if KEY_ATTR in g.attrs
        }


def _science(nxs: Path) -> dict[str, dict[str, list[float]]]:
    """key -> every numeric dataset of the entry's NXprocess results and data: what a reader
    takes from the file (E0, edge step, noise, mu, norm, chi)."""
    out: dict[str, dict[str, list[float]]] = {}
    with h5py.File(nxs, "r", swmr=True, locking=False) as f:
        for group in f.values():
            if KEY_ATTR not in group.attrs:
                continue
            found: dict[str, list[float]] = {}

            def take(name: str, item: object, found: dict[str, list[float]] = found) -> None:
                if isinstance(item, h5py.Dataset) and item.dtype.kind == "f":
                    found[name] = np.atleast_1d(item[()]).tolist()

            group.visititems(take)
            out[_text(group.attrs[KEY_ATTR])] = {
                k: v for k, v in found.items() if not k.startswith("provenance/")
            }
    return out


def _assert_same_science(
    found: dict[str, dict[str, list[float]]], wanted: dict[str, dict[str, list[float]]]
) -> None:
    """Each entry holds the datasets and values the run first wrote (NaN equals NaN here)."""
    assert found.keys() == wanted.keys()
    for key, datasets in wanted.items():
        assert found[key].keys() == datasets.keys(), key
        for name, values in datasets.items():
            assert np.array_equal(found[key][name], values, equal_nan=True), (key, name)


def _damage(nxs: Path) -> None:
    """What the tester did: `printf GARBAGE... | dd of=p65.nxs conv=notrunc`."""
    with open(nxs, "r+b") as f:
        f.write(b"GARBAGEGARBAGEGARBAGE")


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_a_damaged_file_in_a_copied_or_moved_folder_is_rebuilt_from_the_folders_own_store(
    tmp_path: Path, how: str
) -> None:
    first = tmp_path / "beamtime"
    written = _project(first)
    before = _entries(written)
    # the example's kinds of entries and the agent's decisions, so that the rebuild below
    # rebuilds each
    assert set(before.values()) == {"xas/scan", "xas/spectrum", "xas/merged", "decision"}, before
    science = _science(written)
    # E0 and the rest of each result are compared below, not just the entries' names, and
    # each decision's confidence
    results = [k for k, c in before.items() if c in ("xas/spectrum", "xas/merged")]
    assert all("process/results/e0" in science[k] for k in results)
    decisions = [k for k, c in before.items() if c == "decision"]
    assert all("decision/confidence" in science[k] for k in decisions)

    here = tmp_path / "archive"
    if how == "copied":
        shutil.copytree(first, here, symlinks=True)
    else:
        shutil.move(first, here)
    nxs = here / "results" / "p65.nxs"
    _damage(nxs)

    refused = pipeline(here, "run", "p.pipeline.yaml")
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said
    assert "Traceback" not in said
    # the way out names this folder's pipeline file, never the one the run started from
    assert (
        f"then `pipeline run --resume {here / 'p.pipeline.yaml'}` writes every entry of run r1 "
        "into a new file there from the run's stored inputs"
    ) in refused.stderr, said
    assert str(first) not in said, said

    nxs.rename(nxs.with_name("p65.nxs.broken"))
    done = pipeline(here, "run", "--resume", "p.pipeline.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    # every entry of the run is back, each once, with the values the run computed
    assert _entries(nxs) == before
    _assert_same_science(_science(nxs), science)
    assert f"entries_rebuilt_in_file {len(before)}" in done.stdout, done.stdout
    assert f"entries_in_file {len(before)}" in done.stdout, done.stdout
    if how == "copied":  # the original folder's file was not touched
        assert _entries(first / "results" / "p65.nxs") == before


def _resume(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PIPELINE_BIN, "run", "--resume", "p.pipeline.yaml"],
        cwd=folder,
        env=pipeline_env(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _writer_line(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("writer: file ")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_two_copies_of_a_folder_resumed_at_once_each_append_to_their_own_file(
    tmp_path: Path,
) -> None:
    first = tmp_path / "beamtime"
    written = _project(first)
    before = _entries(written)
    second = tmp_path / "copy"
    shutil.copytree(first, second, symlinks=True)
    # a new scan in each folder, under names the example's pattern takes (a repeat's data)
    shutil.copy(DATA / P65_SCANS[1], first / "data" / "20K_GOE_Fe_K_240.00002.xdi")
    shutil.copy(DATA / P65_SCANS[0], second / "data" / "20K_GOE_Fe_K_240.00003.xdi")

    runs = {folder: _resume(folder) for folder in (first, second)}
    outputs = {}
    try:
        for folder, proc in runs.items():
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, out + err
            outputs[folder] = out
    finally:
        for folder, proc in runs.items():
            stop_run(proc, folder / "p.pipeline.yaml", env=pipeline_env(folder), cwd=folder)

    for folder, new, other in (
        (first, "20K_GOE_Fe_K_240.00002.xdi", "20K_GOE_Fe_K_240.00003.xdi"),
        (second, "20K_GOE_Fe_K_240.00003.xdi", "20K_GOE_Fe_K_240.00002.xdi"),
    ):
        nxs = folder / "results" / "p65.nxs"
        entries = _entries(nxs)
        files = source_files(nxs)
        # the run's earlier entries once, its new scan's too, nothing of the other folder's
        assert before.items() <= entries.items()
        assert new in files, files
        assert other not in files, files
        line = _writer_line(outputs[folder])
        assert line.startswith(f"writer: file {nxs}, "), line
        # the copy counts the run's entries as the original does: those of both sessions
        assert f"entries_written {len(entries)}," in line, line
        assert f"entries_in_file {len(entries)}" in line, line
        assert "entries_rebuilt_in_file" not in line, line
