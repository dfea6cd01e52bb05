"""`pipeline run --data-dir DIR` with DIR relative to where the user stands: the supervisor
handed the relative path to workers that run in their own directories, where it named nothing,
and every task failed "pipeline file other/runs/... does not exist". And once such a run had
ended, `pipeline status FILE` without --data-dir showed units "not started" and exited 0, even
for a failed run. Real `pipeline` commands, core units, the embedded store."""

from __future__ import annotations

from pathlib import Path

from helpers import run_pipeline

FILE = "b.pipeline.yaml"
BATCH = """\
pipeline: b
units:
  files: {unit: core.files, params: {directory: in/}, outputs: {files: raw}}
  sink:  {unit: core.jsonl-sink, params: {path: results/out.jsonl}, inputs: {messages: raw}}
"""


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("x\n")
    (tmp_path / "other").mkdir()
    (tmp_path / FILE).write_text(BATCH)
    return tmp_path


def test_a_relative_data_dir_runs_and_status_finds_the_ended_run(tmp_path):
    work = _folder(tmp_path)
    done = run_pipeline("run", FILE, "--data-dir", "other", cwd=work, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len((work / "results" / "out.jsonl").read_text().splitlines()) == 1
    assert list((work / "other" / "runs").iterdir()), "the run directory is under other/"
    shown = run_pipeline("status", FILE, cwd=work)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "job b (batch): complete" in shown.stdout, shown.stdout
    assert "not started" not in shown.stdout


def test_status_of_a_failed_run_elsewhere_says_failed_and_exits_1(tmp_path):
    work = _folder(tmp_path)
    # a damaged file the sink must append to: its worker fails at start, and the run with it
    # (a missing input folder is refused before the run starts, leaving no run to show)
    (work / "results").mkdir()
    (work / "results" / "out.jsonl").write_text("not a record\n")
    failed = run_pipeline("run", FILE, "--data-dir", "other", cwd=work, timeout=120)
    assert failed.returncode != 0, failed.stdout
    shown = run_pipeline("status", FILE, cwd=work)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "job b (batch): failed" in shown.stdout, shown.stdout
