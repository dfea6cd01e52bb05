"""`pipeline reprocess`: the old -> new comparison does not mark a writer's counts of what it
stored (`*_written`, `*_in_file`, `duplicates_skipped`) as "(changed)": a replay stores again
only what its output does not hold yet, so they differ whatever the science did. They are shown
in one line instead; a writer's other values (its file) are still compared. Real `pipeline`
commands on the core units, then on the P65 example with its NeXus writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runs_helpers import p65_copy

from helpers import core_pipeline, run_pipeline

pytestmark = pytest.mark.slow

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


def comparison(out: str, old: str, new: str) -> dict[str, list[str]]:
    """instance -> its rows, from the lines `pipeline reprocess` prints after `old -> new`."""
    lines = out.splitlines()
    start = lines.index(f"old ({old}) -> new ({new}):")
    blocks: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            if not line.endswith(":"):
                break  # the run's closing sentence
            blocks[line[:-1]] = []
        else:
            blocks[list(blocks)[-1]].append(line.strip())
    return blocks


def row(rows: list[str], key: str) -> str:
    return next(r for r in rows if r.startswith(f"{key}: "))


def not_compared(rows: list[str]) -> str:
    return next(r for r in rows if r.startswith("stored, not compared ("))


def test_a_jsonl_sinks_counts_are_named_not_marked_changed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for i in range(3):
        (tmp_path / "data" / f"f{i}.txt").write_text(f"file {i}\n")
    out = tmp_path / "results" / "out.jsonl"
    core_pipeline(tmp_path, files=tmp_path / "data", out=out, name="lines")
    done = run_pipeline("run", "lines.pipeline.yaml", env=NO_NOMAD, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines_before = len(out.read_text().splitlines())
    shutil.rmtree(tmp_path / "data")  # a replay reads no file

    again = run_pipeline(
        "reprocess", "lines.pipeline.yaml", "--from", "r1", env=NO_NOMAD, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    lines_after = len(out.read_text().splitlines())
    assert lines_after > lines_before  # the file grew: the counts of what it holds differ
    sink = comparison(again.stdout, "r1", "r2")["sink"]
    assert row(sink, "file") == f"file: {out} -> {out}"
    assert not [r for r in sink if "(changed)" in r], sink
    for key in ("lines_written", "duplicates_skipped", "lines_in_file"):
        assert not [r for r in sink if r.startswith(f"{key}:")], sink
        assert key in not_compared(sink)
    # the new run's own counts stay in its summary line above the comparison
    assert f"lines_in_file {lines_after}" in again.stdout

    # a writer's other values are still compared: another file is a change
    moved = run_pipeline(
        "reprocess", "lines.pipeline.yaml", "--from", "r1", "--set", "sink.path=results/b.jsonl",
        env=NO_NOMAD, cwd=tmp_path,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stdout + moved.stderr
    sink = comparison(moved.stdout, "r1", "r3")["sink"]
    other = tmp_path / "results" / "b.jsonl"
    assert row(sink, "file") == f"file: {out} -> {other}   (changed)"


def test_p65_reprocess_names_the_nexus_writers_counts_without_a_change(tmp_path: Path) -> None:
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")
    h5py = pytest.importorskip("h5py")
    p65_copy(tmp_path)
    done = run_pipeline("run", "p65-xas.pipeline.yaml", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(tmp_path / "data")
    again = run_pipeline(
        "reprocess", "p65-xas.pipeline.yaml", "--from", "r1", cwd=tmp_path, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    nxs = tmp_path / "results" / "p65.nxs"
    with h5py.File(nxs, "r", locking=False) as f:
        runs = [f[name].attrs.get("asapo_run") for name in f]
    # the replayed raw scans keep their run r1: already in the file, the writer skipped them
    assert runs.count("r1") > 0
    assert runs.count("r2") > 0
    blocks = comparison(again.stdout, "r1", "r2")
    writer = blocks["writer"]
    assert row(writer, "file") == f"file: {nxs} -> {nxs}"
    assert not [r for r in writer if "(changed)" in r], writer
    named = not_compared(writer)
    for key in ("entries_written", "scans_written", "duplicates_skipped", "entries_in_file"):
        assert key in named
        assert not [r for r in writer if r.startswith(f"{key}:")], writer
    assert f"entries_in_file {len(runs)}" in again.stdout  # the new summary, as the file is
    # the science of an unchanged configuration is unchanged, and compared
    assert row(blocks["merge"], "groups") == "groups: 1 -> 1"
    assert not [r for r in blocks["normalize"] if "(changed)" in r], blocks["normalize"]
