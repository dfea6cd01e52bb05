"""`pipeline runs` without FILE takes the one pipeline file in the current directory, as
`status` and `stop` do, and says the same when there is none or several (before: click's
`Missing argument 'FILE'`, an outside tester). Real `pipeline` processes."""

from __future__ import annotations

from pathlib import Path

from helpers import files_to_sink, run_pipeline


def _write(directory: Path, name: str) -> Path:
    return files_to_sink(directory, name, files=0, sink="out.jsonl")


def test_runs_without_file_finds_the_one_file_here(tmp_path: Path) -> None:
    none = run_pipeline("runs", cwd=tmp_path)
    assert none.returncode == 2, none.stdout + none.stderr
    assert none.stderr == "error: give the pipeline file (there is no *.pipeline.yaml here)\n"

    _write(tmp_path, "one")
    listed = run_pipeline("runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout == "pipeline one has no runs in this store yet\n"

    _write(tmp_path, "two")
    several = run_pipeline("runs", cwd=tmp_path)
    assert several.returncode == 2, several.stdout + several.stderr
    assert several.stderr == (
        "error: give the pipeline file (there are several here: one.pipeline.yaml, "
        "two.pipeline.yaml)\n"
    )
