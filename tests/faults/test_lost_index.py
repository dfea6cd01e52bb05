"""A data source's index cut to 0 bytes or deleted (a full disk, a bad copy, `: > index.db`)
while its folder says it held data. Before, the embedded store opened it as a new, empty one:
`pipeline run` resumed (or, for the run records, began a new run) and the source sent every
input again into results that held them. Now it is damage: one sentence naming the file and
what to do, exit 78, nothing run. Real `pipeline` commands, the real embedded store."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from faults_support import pipeline, sink_names
from test_damaged_data import one_sentence, run_once

from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.naming import data_source_for


def _runs(file: Path, cwd: Path) -> list[dict]:
    listed = pipeline("runs", str(file), "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


@pytest.mark.parametrize(
    ("source", "damage"),
    [
        (data_source_for("raw", "faults", "r1"), "empty"),
        (data_source_for("raw", "faults", "r1"), "missing"),
        ("faults.runs", "empty"),
        ("faults.errors", "empty"),
    ],
)
def test_an_index_emptied_or_deleted_is_refused_and_nothing_is_sent_again(
    tmp_path: Path, source: str, damage: str
) -> None:
    file, store = run_once(tmp_path)
    before = sink_names(tmp_path / "out.jsonl")
    index = store / source / "index.db"
    if damage == "empty":
        index.write_bytes(b"")
    else:
        index.unlink()

    done = pipeline("run", str(file), cwd=tmp_path)
    what = "is empty (0 bytes)" if damage == "empty" else "is missing"
    err = one_sentence(done, f"({index}) {what}, though the data source held data")
    assert done.returncode == 78, err
    if ".r1." in source:  # a run's own data source: a new run leaves it behind
        assert "or start over in a new run with `pipeline run --fresh FILE`" in err, err
    else:  # one every run shares: restored, or moved aside
        assert f"or move the folder {store / source} aside" in err, err
    assert "resuming" not in done.stdout + done.stderr
    # nothing was run: every input reached the sink once, and no session was recorded
    assert sink_names(tmp_path / "out.jsonl") == before
    assert all(count == 1 for count in before.values()), before
    if source != "faults.runs":
        [run] = _runs(file, tmp_path)
        assert (run["id"], run["sessions"]) == ("r1", 1), run


@pytest.mark.parametrize("source", [data_source_for("raw", "faults", "r1"), "faults.runs"])
def test_what_the_sentence_says_to_do_runs_again(tmp_path: Path, source: str) -> None:
    """A run's own data source: `--fresh` runs a new run r2, past the lost index. One every
    run shares (the run records): its folder moved aside, the next run is a new one."""
    file, store = run_once(tmp_path)
    (store / source / "index.db").write_bytes(b"")
    assert pipeline("run", str(file), cwd=tmp_path).returncode == 78
    if ".r1." in source:
        again = pipeline("run", "--fresh", str(file), cwd=tmp_path)
    else:
        shutil.move(store / source, tmp_path / "aside")
        again = pipeline("run", str(file), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "run r2 of pipeline faults starts" in again.stdout + again.stderr
    assert all(count == 2 for count in sink_names(tmp_path / "out.jsonl").values())


def test_a_run_left_behind_with_its_lost_index_leaves_the_store_usable(tmp_path: Path) -> None:
    """After `--fresh` left run r1 behind with its lost index, the store's other commands go
    on: a lost folder listed among the data sources made `pipeline streams` and every
    `prune` fail for the whole store, for good."""
    file, store = run_once(tmp_path)
    (store / data_source_for("raw", "faults", "r1") / "index.db").write_bytes(b"")
    assert pipeline("run", "--fresh", str(file), cwd=tmp_path).returncode == 0
    for args in (("streams", str(file)), ("prune", str(store), "--older-than", "7d")):
        done = pipeline(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
    listed = pipeline("streams", str(file), cwd=tmp_path).stdout
    assert data_source_for("raw", "faults", "r2") in listed, listed


def test_a_garbled_store_marker_is_one_sentence_with_what_to_do(tmp_path: Path) -> None:
    file, store = run_once(tmp_path)
    marker = store / "store.json"
    marker.write_text("\x00garbage")
    for args in (("run", str(file)), ("streams", str(file)), ("worker", str(file), "copy")):
        done = pipeline(*args, cwd=tmp_path)
        one_sentence(done, f"{marker} is unreadable", "write it again as")
    # as told: the marker written again, the store is read as before (r1 resumed, nothing new)
    marker.write_text(json.dumps({"format": "asapo-pipelines-embedded", "version": 1}))
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(count == 1 for count in sink_names(tmp_path / "out.jsonl").values())


def test_a_data_source_another_opener_is_making_is_not_taken_for_a_lost_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline's workers open their new data sources together (the status source, a
    shared output). One opener looked for the index, found none, and by the time it looked
    for the marker the other had made both: it refused the source as one whose index was
    lost (exit 78 in a worker; the status thread said to restore the index from a backup).
    The interleaving is forced here: the first look of one opener into the data source's
    folder waits until the other has opened the source."""
    transport = open_transport({"embedded": {"path": str(tmp_path / "store")}})
    folder = str(tmp_path / "store" / "fresh")
    real_stat = os.stat
    looking, made = threading.Event(), threading.Event()
    outcome: list[object] = []

    def first_look_waits(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not looker or looking.is_set():
            return real_stat(path, *args, **kwargs)
        if not os.fspath(path).startswith(folder):
            return real_stat(path, *args, **kwargs)
        try:
            seen: object = real_stat(path, *args, **kwargs)
        except OSError as exc:
            seen = exc
        looking.set()
        assert made.wait(30)
        if isinstance(seen, OSError):
            raise seen
        return seen

    def look() -> None:
        try:
            outcome.append(transport.producer("fresh"))
        except Exception as exc:  # the outcome is what the test asserts
            outcome.append(exc)

    monkeypatch.setattr(os, "stat", first_look_waits)
    looker = threading.Thread(target=look)
    looker.start()
    try:
        assert looking.wait(30), "the opener never looked into the data source's folder"
        maker = transport.producer("fresh")
        maker.send("s", None, {"n": 1})
        maker.flush()
    finally:
        made.set()
        looker.join(30)
    [opened] = outcome
    assert not isinstance(opened, Exception), f"{type(opened).__name__}: {opened}"
    opened.send("s", None, {"n": 2})  # type: ignore[attr-defined]
    opened.close()  # type: ignore[attr-defined]
    maker.close()
    with transport.consumer("fresh", "reader") as consumer:
        assert [consumer.get_next("s").metadata["n"] for _ in range(2)] == [1, 2]
    transport.close()
