"""`pipeline streams FILE` lists FILE's pipeline, as `runs`, `tail` and `prune` with a file do.

An outside tester ran two pipelines in one folder: `streams FILE` listed both pipelines' data
sources together, so one pipeline's streams read as the other's. A store directory still lists
every pipeline's; `--all` does with a file.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import core_pipeline, run_pipeline


def _names(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [s["name"] for s in json.loads(result.stdout)["data_sources"]]


def test_streams_of_a_pipeline_file_lists_its_own_data_sources(tmp_path: Path) -> None:
    files = tmp_path / "in"
    files.mkdir()
    for i in range(3):
        (files / f"f{i}.txt").write_text(f"file {i}\n")
    first = core_pipeline(tmp_path, files=files, out=tmp_path / "a.jsonl", name="first")
    second = core_pipeline(tmp_path, files=files, out=tmp_path / "b.jsonl", name="second")
    for file in (first, second):
        done = run_pipeline("run", str(file), cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    own = _names(run_pipeline("streams", str(first), "--json", cwd=tmp_path))
    assert own
    assert all(n.startswith("first.") for n in own), own
    every = _names(run_pipeline("streams", str(first), "--json", "--all", cwd=tmp_path))
    assert {n.partition(".")[0] for n in every} == {"first", "second"}
    store = _names(run_pipeline("streams", str(tmp_path / ".pipeline-data"), "--json"))
    assert sorted(store) == sorted(every)

    shown = run_pipeline("streams", str(first), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "second." not in shown.stdout
    said = " ".join(shown.stdout.split())  # the table's title wraps on a narrow terminal
    assert "(pipeline first)" in said
    assert (
        f"the store holds other data sources too (second): `pipeline streams "
        f"{first} --all` lists them"
    ) in said
