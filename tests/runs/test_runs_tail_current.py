"""`pipeline tail` reads the run going on, not the run with the highest id: after a reprocess
(`r2`), `pipeline run` resumes `r1`, and the new messages of `r1` are the ones to show.
`--run RUN` picks a run; an unknown one is one sentence naming the runs there are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import one_sentence

from asapo_pipelines.worker.naming import data_source_for

from helpers import core_pipeline, run_pipeline

NAME = "tailed"


def _write(files: Path, names: list[str]) -> None:
    files.mkdir(exist_ok=True)
    for name in names:
        (files / name).write_text(f"{name}\n")


def _ok(*args: str, cwd: Path) -> str:
    done = run_pipeline(*args, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _tailed(cwd: Path, *extra: str) -> list[dict[str, Any]]:
    out = _ok("tail", f"{NAME}.pipeline.yaml", "copied", "--all", "--json", *extra, cwd=cwd)
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def resumed_after_reprocess(tmp_path_factory) -> Path:
    """r1 over two files, r2 a reprocess of r1, then r1 resumed over a third file."""
    work = tmp_path_factory.mktemp("tail-current")
    files = work / "files"
    _write(files, ["a.txt", "b.txt"])
    file = core_pipeline(work, files=files, out=work / "out.jsonl", store="store", name=NAME).name
    _ok("run", file, cwd=work)
    _ok("reprocess", file, "--from", "r1", cwd=work)
    _write(files, ["c.txt"])
    _ok("run", file, cwd=work)  # resumes r1: a reprocess is never resumed
    runs = json.loads(_ok("runs", file, "--json", cwd=work))["runs"]
    sessions = {run["id"]: run["sessions"] for run in runs}
    assert sessions == {"r1": 2, "r2": 1}, runs
    return work


def test_tail_shows_the_run_resumed_after_a_reprocess(resumed_after_reprocess: Path):
    shown = _tailed(resumed_after_reprocess)
    assert {r["source"] for r in shown} == {data_source_for("copied", NAME, "r1")}, shown
    assert sorted(r["metadata"]["name"] for r in shown) == ["a.txt", "b.txt", "c.txt"]


def test_tail_run_picks_the_reprocess(resumed_after_reprocess: Path):
    for asked in ("r2", "2"):
        shown = _tailed(resumed_after_reprocess, "--run", asked)
        assert {r["source"] for r in shown} == {data_source_for("copied", NAME, "r2")}, shown
        assert sorted(r["metadata"]["name"] for r in shown) == ["a.txt", "b.txt"]


def test_tail_unknown_run_is_one_sentence_naming_the_runs(resumed_after_reprocess: Path):
    done = run_pipeline(
        "tail", f"{NAME}.pipeline.yaml", "copied", "--run", "r9", cwd=resumed_after_reprocess
    )
    assert done.returncode != 0
    assert done.stdout == ""
    sentence = one_sentence(done.stderr)
    assert "no run 'r9'" in sentence, sentence
    assert "r1, r2" in sentence, sentence
