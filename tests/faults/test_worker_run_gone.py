"""A worker an executor started for run r1 (`ASAPO_PIPELINES_RUN`) against a store that no
longer holds r1: its data was lost or emptied after the run began (a Redis restarted without
persistence, a store folder moved away). Before, the worker said only "pipeline faults has no
run 'r1' in this store (its runs: none yet; see `pipeline runs`)" and exited 1, so that the
executor restarted it; now the sentence says the likely cause and what to do, exit 78 (not
restarted), nothing run. Real `pipeline worker`, the real embedded store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from faults_support import pipeline, sink_names
from test_damaged_data import one_sentence, run_once


def test_a_worker_of_a_run_the_store_lost_says_why_and_what_to_do(tmp_path: Path) -> None:
    file, store = run_once(tmp_path)
    before = sink_names(tmp_path / "out.jsonl")
    shutil.move(store, tmp_path / "aside")  # the store comes back empty

    done = pipeline("worker", str(file), "files", cwd=tmp_path, ASAPO_PIPELINES_RUN="r1")
    err = one_sentence(done)
    assert err == (
        "error: this worker was started for run r1 of pipeline faults, but the store no "
        "longer holds that run (it holds no run of this pipeline): its data was most likely "
        "lost or emptied after the run began (a Redis restarted without persistence, a store "
        "folder moved or deleted); nothing was run, so no input is processed again into "
        "results that hold it: restore the store's data, or start a new run that processes "
        "every input again (`pipeline run --fresh FILE`, or `pipeline deploy --fresh FILE` "
        "for a deployment)"
    ), err
    assert done.returncode == 78, err  # no restart brings the run back
    # nothing sent again, no run r1 begun in the empty store
    assert sink_names(tmp_path / "out.jsonl") == before
    listed = pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)["runs"] == [], listed.stdout + listed.stderr
    assert not any(store.glob("faults.r1.*")), sorted(p.name for p in store.iterdir())


def test_a_store_holding_many_runs_names_how_many_and_the_latest(tmp_path: Path) -> None:
    """What the store holds instead is said alike by a worker and by `status`, `start` and
    `stop` of a deployment (one clause, `held_instead`): the latest five runs, and how many
    there are when there are more. Before, the worker named the latest five as if they were
    all, and the deployments' sentence named every run the store holds, however many."""
    file, _ = run_once(tmp_path)
    for _ in range(5):  # r2..r6
        again = pipeline("run", "--fresh", str(file), cwd=tmp_path)
        assert again.returncode == 0, again.stderr

    done = pipeline("worker", str(file), "files", cwd=tmp_path, ASAPO_PIPELINES_RUN="r9")
    err = one_sentence(done)
    assert err.startswith(
        "error: this worker was started for run r9 of pipeline faults, but the store no "
        "longer holds that run (it holds 6 runs, the latest r2, r3, r4, r5, r6): its data was "
        "most likely lost or emptied after the run began"
    ), err
    assert done.returncode == 78, err
