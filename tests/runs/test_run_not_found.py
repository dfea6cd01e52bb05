"""A run id the store does not hold is one sentence naming the runs it does hold: the newest
five, and how many there are when there are more. `reprocess --from r99` of a pipeline with
six runs listed `r2, r3, r4, r5, r6` as if r1 were gone (an outside tester)."""

from __future__ import annotations

from pathlib import Path

from asapo_pipelines.runs import RunStore
from asapo_pipelines.transport import open_transport

from helpers import files_to_sink, run_pipeline


def _runs(file: Path, count: int) -> None:
    store = {"embedded": {"path": str(file.parent / ".pipeline-data")}}
    with open_transport(store) as transport:
        runs = RunStore(transport, "many")
        for _ in range(count):
            runs.begin(pipeline_file=file, text=file.read_text(), configurations={}, overrides={})


def test_an_unknown_run_names_how_many_runs_there_are(tmp_path: Path) -> None:
    file = files_to_sink(tmp_path, "many")
    _runs(file, 6)
    shown = run_pipeline("tail", file.name, "raw", "--run", "r99", cwd=tmp_path)
    assert shown.returncode != 0, shown.stdout
    assert (
        "pipeline many has no run 'r99' in this store (its runs: 6, the newest r2, r3, r4, r5, "
        "r6; see `pipeline runs`)"
    ) in shown.stderr, shown.stderr


def test_an_unknown_run_among_few_names_them_all(tmp_path: Path) -> None:
    file = files_to_sink(tmp_path, "many")
    _runs(file, 2)
    shown = run_pipeline("tail", file.name, "raw", "--run", "r99", cwd=tmp_path)
    assert shown.returncode != 0, shown.stdout
    assert "(its runs: r1, r2; see `pipeline runs`)" in shown.stderr, shown.stderr


def test_reprocess_and_prune_of_an_unknown_run_exit_2_as_tail_does(tmp_path: Path) -> None:
    """`reprocess --from r99` and `prune --run r99` exited 1, `tail --run r99` 2, as every
    other unknown name does: a name the user gave wrong. All three now say the same sentence
    naming the runs there are, with exit code 2."""
    file = files_to_sink(tmp_path, "many")
    _runs(file, 2)
    said = (
        "error: pipeline many has no run 'r99' in this store (its runs: r1, r2; see `pipeline "
        "runs`)"
    )
    for args in (
        ("tail", file.name, "raw", "--run", "r99"),
        ("reprocess", file.name, "--from", "r99"),
        ("prune", file.name, "--run", "r99"),
    ):
        shown = run_pipeline(*args, cwd=tmp_path)
        assert (shown.returncode, shown.stderr.strip()) == (2, said), (args, shown.stderr)
        assert shown.stdout == "", args


def test_prune_without_a_target_says_what_to_give(tmp_path: Path) -> None:
    """`pipeline prune --older-than 7d` without a target gave click's `Missing argument
    'PATH_OR_PIPELINE'` under its usage block. It deletes data, so no file is guessed: one
    sentence says what to give, exit code 2, and nothing is pruned."""
    file = files_to_sink(tmp_path, "many")
    _runs(file, 1)
    for options in ((), ("--older-than", "0s"), ("--run", "r1")):
        shown = run_pipeline("prune", *options, cwd=tmp_path)
        assert shown.returncode == 2, shown.stdout + shown.stderr
        lines = shown.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: usage: pipeline prune PATH_OR_PIPELINE "), lines
        assert "pipeline file or store directory" in lines[0], lines
        assert "Missing argument" not in shown.stderr
    listed = run_pipeline("runs", file.name, "--json", cwd=tmp_path)
    assert '"r1"' in listed.stdout, listed.stdout + listed.stderr
