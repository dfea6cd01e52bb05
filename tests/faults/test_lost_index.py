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


def _lost_sentence(store: Path, source: str) -> str:
    return f"({store / source / 'index.db'}) is empty (0 bytes), though the data source held data"


def _says_lost(done: object, store: Path, source: str) -> None:
    """Exit 78, and on stderr one line: the lost data source's sentence, no traceback."""
    err = one_sentence(done, _lost_sentence(store, source))
    assert done.returncode == 78, err  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "commands"),
    [
        (data_source_for("raw", "faults", "r1"), [("tail", "raw")]),
        ("faults.runs", [("runs",), ("status",), ("tail", "copied")]),
        ("faults.errors", [("tail", "errors")]),
    ],
)
def test_a_command_reading_a_lost_data_source_says_so(
    tmp_path: Path, source: str, commands: list[tuple[str, ...]]
) -> None:
    """Read as never written, a lost stream of 20 messages was "run r1 (complete) holds no
    messages", lost run records "no runs in this store yet" (and `status` said to start a
    run), lost error records printed nothing, each with exit 0 (2 for `status`)."""
    file, store = run_once(tmp_path)
    (store / source / "index.db").write_bytes(b"")
    for command, *rest in commands:
        done = pipeline(command, str(file), *rest, cwd=tmp_path)
        _says_lost(done, store, source)
        assert done.stdout == "", (command, done.stdout)


def test_a_run_left_behind_with_its_lost_index_is_said_and_prune_run_removes_it(
    tmp_path: Path,
) -> None:
    """After `--fresh` left run r1 behind with its lost index, `streams` and `prune` list and
    prune the rest (a lost folder listed among the data sources made them fail for the whole
    store), then say the lost one and exit 78 (before, they left it out with no word, exit
    0); `prune --run r1` removes it, and the store is whole again."""
    file, store = run_once(tmp_path)
    lost = data_source_for("raw", "faults", "r1")
    (store / lost / "index.db").write_bytes(b"")
    assert pipeline("run", "--fresh", str(file), cwd=tmp_path).returncode == 0
    listed = pipeline("streams", str(file), cwd=tmp_path)
    _says_lost(listed, store, lost)
    assert "`pipeline prune FILE --run r1` then removes run r1" in listed.stderr
    assert data_source_for("raw", "faults", "r2") in listed.stdout, listed.stdout
    assert lost not in listed.stdout, listed.stdout
    as_json = pipeline("streams", str(file), "--json", cwd=tmp_path)
    _says_lost(as_json, store, lost)
    assert json.loads(as_json.stdout)["lost_data_sources"] == [lost]
    pruned = pipeline("prune", str(file), "--older-than", "0s", cwd=tmp_path)
    _says_lost(pruned, store, lost)
    assert f"{data_source_for('copied', 'faults', 'r2')}/default" in pruned.stdout, pruned.stdout
    _says_lost(pipeline("prune", str(store), "--older-than", "0s", cwd=tmp_path), store, lost)
    removed = pipeline("prune", str(file), "--run", "r1", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert f"removed its data sources whose index was lost: {lost}" in removed.stdout
    assert not (store / lost).exists()
    for args in (("streams", str(file)), ("prune", str(store), "--older-than", "7d")):
        done = pipeline(*args, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (0, ""), args
    assert [run["id"] for run in _runs(file, tmp_path)] == ["r2"]


def test_lost_run_records_are_said_by_streams_and_refuse_a_prune(tmp_path: Path) -> None:
    """Without its run records the store cannot tell which runs are running, so a prune
    (by file or by store directory) refuses instead of dropping streams under one; `streams`
    lists the rest and says them. Before: both left them out with no word, exit 0."""
    file, store = run_once(tmp_path)
    (store / "faults.runs" / "index.db").write_bytes(b"")
    listed = pipeline("streams", str(file), cwd=tmp_path)
    _says_lost(listed, store, "faults.runs")
    assert data_source_for("copied", "faults", "r1") in listed.stdout, listed.stdout
    copied = sink_names(tmp_path / "out.jsonl")
    for target in (str(file), str(store)):
        refused = pipeline("prune", target, "--older-than", "0s", cwd=tmp_path)
        _says_lost(refused, store, "faults.runs")
    listed_again = pipeline("streams", str(file), "--json", cwd=tmp_path)
    held = {s["name"]: s["streams"] for s in json.loads(listed_again.stdout)["data_sources"]}
    assert held[data_source_for("copied", "faults", "r1")], "a refused prune dropped a stream"
    assert sink_names(tmp_path / "out.jsonl") == copied


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
