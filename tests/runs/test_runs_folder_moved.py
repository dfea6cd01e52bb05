"""A project folder moved or copied with its store (renamed, or brought to the facility's
storage after the beamtime) keeps its runs: `runs`, `status` and `run --resume` work from the
new place, and the resumed run writes nothing twice. Another file beside the moved one is
still refused the namespace. Real `pipeline` commands on a real run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runs_helpers import one_sentence
from test_runs_copy_of_owner import DEMO

from helpers import run_pipeline


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the demo pipeline ran in once (run r1)."""
    folder = tmp_path_factory.mktemp("beamtime") / "before"
    (folder / "data").mkdir(parents=True)
    for name in ("a.txt", "b.txt"):
        (folder / "data" / name).write_text(f"{name}\n")
    (folder / "demo.pipeline.yaml").write_text(DEMO)
    done = run_pipeline("run", "demo.pipeline.yaml", cwd=folder, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.fixture(params=["moved", "copied"])
def elsewhere(request: pytest.FixtureRequest, first: Path, tmp_path: Path) -> Path:
    """The project folder at another place; the original stays only when copied."""
    staged = tmp_path / "staged"
    shutil.copytree(first, staged, symlinks=True)
    if request.param == "copied":
        return Path(shutil.copytree(staged, tmp_path / "copy", symlinks=True))
    # moved: the original absolute paths no longer exist
    return staged.rename(tmp_path / "after")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_runs_and_status_read_the_moved_folders_run_as_its_own(elsewhere):
    runs = run_pipeline("runs", "demo.pipeline.yaml", cwd=elsewhere)
    assert runs.returncode == 0, runs.stdout + runs.stderr
    assert "r1" in runs.stdout
    assert "complete" in runs.stdout
    assert "belongs to" not in runs.stderr, runs.stderr
    status = run_pipeline("status", "demo.pipeline.yaml", cwd=elsewhere)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("job demo (batch): complete"), status.stdout + status.stderr


def test_a_resume_in_the_moved_folder_goes_on_with_run_r1_and_writes_nothing_twice(elsewhere):
    results = elsewhere / "results" / "out.jsonl"
    before = _lines(results)
    assert len(before) == 2
    done = run_pipeline("run", "--resume", "demo.pipeline.yaml", cwd=elsewhere, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming run r1 of pipeline demo" in done.stdout + done.stderr
    assert _lines(results) == before
    runs = run_pipeline("runs", "demo.pipeline.yaml", cwd=elsewhere)
    assert [line.split()[1] for line in runs.stdout.splitlines() if "│ r" in line] == ["r1"]


def test_another_file_beside_the_moved_one_is_still_refused(elsewhere):
    (elsewhere / "mine.pipeline.yaml").write_text(
        DEMO.replace("results/out.jsonl", "results/mine.jsonl")
    )
    done = run_pipeline("run", "mine.pipeline.yaml", cwd=elsewhere)
    assert done.returncode == 1
    assert "belongs to" in one_sentence(done.stderr)
    assert not (elsewhere / "results" / "mine.jsonl").exists()


def test_logs_given_the_file_alone_asks_for_the_unit(first):
    done = run_pipeline("logs", "demo.pipeline.yaml", cwd=first)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: name the unit whose log to print: pipeline logs demo.pipeline.yaml UNIT"
    )
