"""`pipeline status` of a resumed run says its counts are the session's. Each session counts
from zero while the units' summaries under the table count the whole run: an idle resumed
session read "processed 0" above "sink: lines_written 3", as if the run had done nothing."""

from __future__ import annotations

import json
from pathlib import Path

from faults_support import core_pipeline, pipeline, write_files

NOTE = "The table counts this session only"


def test_the_status_of_a_resumed_run_says_its_counts_are_the_sessions(tmp_path: Path) -> None:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 3)
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    first = pipeline("run", str(file), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    status = pipeline("status", str(file), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert NOTE not in status.stdout, status.stdout  # one session: the counts are the run's

    again = pipeline("run", str(file), cwd=tmp_path)  # nothing new: resumes r1, does nothing
    assert again.returncode == 0, again.stderr
    status = pipeline("status", str(file), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    said, ended = " ".join(status.stdout.split()), " ".join(again.stdout.split())
    [run] = json.loads(pipeline("runs", str(file), "--json", cwd=tmp_path).stdout)["runs"]
    assert run["sessions"] == 2
    # (the line is wrapped to the table's width)
    resumed = f"{NOTE}: run {run['id']} was resumed (session 2)."
    # the summaries under it are the run's: the sink's 3 lines, written in session 1
    whole = "The units' summaries under it are the whole run's so far"
    assert f"{resumed} {whole}" in said, status.stdout
    assert "lines_written 3" in said, status.stdout
    # and under the table `pipeline run` printed when the session ended
    assert f"{resumed} {whole}" in ended, again.stdout
