"""`pipeline runs` shows a run's `--set` overrides as its last session's: one given only at a
later resume showed in the table as if the whole run had been made with it (`r1 ... file ...;
normalize.autobk.rbkg=1.2; resumed changed x1` for a run whose first sessions ran with 1.0).
Real `pipeline` commands, real workers, the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_pipeline

FILE = "ov.pipeline.yaml"
PIPELINE = """\
pipeline: ov
units:
  files: {unit: core.files, params: {directory: in/, pattern: "*.txt"}, outputs: {files: raw}}
  sink:  {unit: core.jsonl-sink, params: {path: results/out.jsonl, payload: text}, inputs: {messages: raw}}
"""  # noqa: E501


def run(directory: Path, *args: str) -> None:
    done = run_pipeline("run", FILE, *args, cwd=directory, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def configuration_cell(directory: Path, run_id: str) -> str:
    """The run's configuration as the table shows it, the lines of a wrapped cell joined."""
    listed = run_pipeline("runs", FILE, cwd=directory)
    assert listed.returncode == 0, listed.stderr
    cell: list[str] = []
    for line in listed.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]  # a table row, between its borders
        if cells and (cells[0] == run_id or (cell and not cells[0])):
            cell.append(cells[4])
        elif cell:
            break
    assert cell, listed.stdout
    return " ".join(cell)


def test_an_override_given_at_a_resume_says_since_which_session(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    (tmp_path / FILE).write_text(PIPELINE)
    run(tmp_path)  # r1, session 1: the file's settle_seconds
    run(tmp_path)  # session 2, unchanged
    run(tmp_path, "--resume", "--set", "files.settle_seconds=0.5")  # session 3
    run(tmp_path, "--fresh", "--set", "files.settle_seconds=0.5")  # r2, with it from the start

    listed = run_pipeline("runs", FILE, "--json", cwd=tmp_path)
    sessions = [s["overrides"] for s in json.loads(listed.stdout)["runs"][0]["session_list"]]
    assert sessions == [{}, {}, {"files.settle_seconds": 0.5}]

    assert "files.settle_seconds=0.5 (since session 3)" in configuration_cell(tmp_path, "r1")
    whole = configuration_cell(tmp_path, "r2")
    assert "files.settle_seconds=0.5" in whole
    assert "since session" not in whole
