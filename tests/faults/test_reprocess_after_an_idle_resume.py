"""A session with nothing to do (a resume of a finished run) does not blank what the run's units
said: `pipeline reprocess` compares against the summaries of the sessions that did the work.
Before, the old side of the comparison was the last session's summaries of nothing."""

from __future__ import annotations

import re
from pathlib import Path

from faults_support import core_pipeline, pipeline, write_files


def test_reprocess_after_a_resume_that_had_nothing_to_do_compares_with_the_work_done(
    tmp_path: Path,
) -> None:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 3)
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    first = pipeline("run", str(file), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = pipeline("run", str(file), cwd=tmp_path)  # nothing new: resumes r1, does nothing
    assert again.returncode == 0, again.stderr
    assert "resuming run r1" in again.stdout + again.stderr

    done = pipeline("reprocess", str(file), "--from", "r1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = re.search(r"^  stored, not compared .*lines_written (\d+) -> (\d+)", done.stdout, re.M)
    assert shown is not None, done.stdout
    assert shown[1] == "3", done.stdout  # what r1's first session wrote, not the resume's 0
