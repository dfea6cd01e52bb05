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
