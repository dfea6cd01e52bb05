"""Watch mode and files still being written: a writer that keeps its file open and pauses
longer than `settle_seconds` (a motor move), a file open for writing when the watch starts,
and a file that changes after it was read (a file system without events, such as NFS)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from xas_procs import read, spawn, stop, wait_until, watch_units, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import Scan
from asapo_pipelines_xas.scanfiles import ScanFileWatcher

LINES = (DATA / P65_SCANS[1]).read_text().splitlines(keepends=True)
HEADER = [line for line in LINES if line.startswith("#")]
ROWS = [line for line in LINES if not line.startswith("#")]


def chunks() -> list[list[str]]:
    """The header alone, then the data rows in two parts (a third, then the rest)."""
    third = len(ROWS) // 3
    return [HEADER, ROWS[:third], ROWS[third:]]


def watch_pipeline(tmp_path: Path, units: tuple[str, ...], **scan_params: object) -> Path:
    (tmp_path / "incoming").mkdir()
    all_units = watch_units(settle_seconds=0.4, **scan_params)
    return write_pipeline(tmp_path, "p65-watch", {u: all_units[u] for u in units})


def test_an_open_file_written_with_pauses_longer_than_settling_is_read_whole(tmp_path):
    """The writer keeps the file open: header, a pause longer than the settle time, a third of
    the data, another pause, the rest. With inotify the source waits for the close."""
    pipeline = watch_pipeline(tmp_path, ("scans",))
    store, incoming = tmp_path / "store", tmp_path / "incoming"
    source = spawn(pipeline, "scans", tmp_path)
    try:
        time.sleep(3)  # the worker is watching (it starts in about a second)
        with (incoming / "scan_300.xdi").open("w") as f:
            for part in chunks():
                f.writelines(part)
                f.flush()
                time.sleep(1.2)  # three times settle_seconds
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 1, 20, [source])
        time.sleep(1.0)  # nothing more comes
    finally:
        assert stop(source) == 0
    scans = read(store, "raw-scans")
    assert [v["metadata"]["points_read"] for _, v in scans] == [len(ROWS)]
    assert read(store, "p65-watch.errors", "scans") == []  # no "no data rows" for the header


def test_a_file_open_for_writing_when_the_watch_starts_is_not_taken(tmp_path):
    """No event tells about a file written before the watch began: settling alone would take
    it at its first pause; a process holding it open for writing keeps it back."""
    path = tmp_path / "scan_000.xdi"
    with path.open("w") as f:
        f.writelines(HEADER + ROWS[:100])
        f.flush()
        watcher = ScanFileWatcher(tmp_path, "*.xdi", settle_seconds=0.1)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert watcher.poll() == []
            time.sleep(0.05)
        f.writelines(ROWS[100:])
    assert wait_until(lambda: watcher.poll() == [path], 5)


def test_without_events_a_file_that_grows_after_it_was_read_is_sent_again(tmp_path):
    """On a file system without events (here `recursive: true`, which watches by polling) a
    writer that pauses longer than settle_seconds gets its file read early. The file is not lost:
    its complete version is sent again under its own key (a real worker, whose de-duplication by
    key dropped it before), and the merge keeps the complete scan and marks the partial one as
    superseded by it."""
    pipeline = watch_pipeline(tmp_path, ("scans",), recursive=True)
    store, incoming = tmp_path / "store", tmp_path / "incoming"
    source = spawn(pipeline, "scans", tmp_path)
    try:
        (incoming / P65_SCANS[0]).write_bytes((DATA / P65_SCANS[0]).read_bytes())
        # another host's writer: appends and closes (NFS shows no open file here either)
        (incoming / P65_SCANS[1]).write_text("".join(HEADER + ROWS[: len(ROWS) // 3]))
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 2, 20, [source])
        with (incoming / P65_SCANS[1]).open("a") as f:
            f.writelines(ROWS[len(ROWS) // 3 :])
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 3, 10, [source])
        time.sleep(1.0)  # nothing more comes
    finally:
        assert stop(source) == 0
    scans = read(store, "raw-scans")
    assert len(scans) == 3
    second = [(m, v) for m, v in scans if v["metadata"]["file"] == P65_SCANS[1]]
    assert [v["metadata"]["points_read"] for _, v in second] == [len(ROWS) // 3, len(ROWS)]
    keys = [m["provenance"]["key"] for m, _ in second]
    names = [key.rpartition("key:")[2] for key in keys]
    assert names[0] == P65_SCANS[1]
    assert names[1].startswith(P65_SCANS[1] + "@")
    assert second[1][0]["file_version"] == 2
    assert second[1][1]["metadata"]["replaces"] == P65_SCANS[1]

    # what xas.normalize and xas.merge make of the three messages (in arrival order)
    params = NormalizeParams.model_validate(REFERENCE_SETTINGS)
    merger = Merger()
    for meta, body in scans:
        spectrum = normalize_scan(Scan.from_json(body), params)
        spectrum.metadata["scan_id"] = meta["provenance"]["key"]  # as xas.normalize sets it
        merged = merger.add(spectrum)
    final = merged.to_json()
    assert final["n_merged"] == 2
    (rejected,) = final["rejected"]
    assert rejected["scan"] == keys[0]  # the partial version
    # no measurement of its own: superseded by the complete version, not a faulty scan
    assert rejected["superseded"] is True
    assert "replaced by version 2 of the same file" in " ".join(rejected["reasons"])


def test_a_file_read_too_early_and_completed_while_the_source_was_stopped_is_sent_again(
    tmp_path,
):
    """The same early read, but the source is stopped before the rest of the file is written
    and started again after: the restarted source learns from what its earlier run sent which
    version of each file that was (`restore`), so the complete file is sent as a new version
    replacing the partial one. It was taken for the partial one and dropped as a duplicate: the
    complete scan was never read. The unchanged file is not sent twice."""
    pipeline = watch_pipeline(tmp_path, ("scans",), recursive=True)
    store, incoming = tmp_path / "store", tmp_path / "incoming"
    (incoming / P65_SCANS[0]).write_bytes((DATA / P65_SCANS[0]).read_bytes())
    (incoming / P65_SCANS[1]).write_text("".join(HEADER + ROWS[: len(ROWS) // 3]))
    source = spawn(pipeline, "scans", tmp_path)
    try:
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 2, 20, [source])
    finally:
        assert stop(source) == 0
    with (incoming / P65_SCANS[1]).open("a") as f:
        f.writelines(ROWS[len(ROWS) // 3 :])
    source = spawn(pipeline, "scans", tmp_path)
    try:
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 3, 20, [source])
        time.sleep(1.5)  # settled and looked at again: nothing more comes
    finally:
        assert stop(source) == 0
    scans = read(store, "raw-scans")
    assert [v["metadata"]["file"] for _, v in scans] == [*P65_SCANS[:2], P65_SCANS[1]]
    assert [v["metadata"]["points_read"] for _, v in scans[1:]] == [len(ROWS) // 3, len(ROWS)]
    assert scans[2][1]["metadata"]["replaces"] == P65_SCANS[1]


def test_an_empty_file_waits_in_watch_mode_and_is_read_once_written(tmp_path):
    """Acquisition software creates the file first: an empty file is not handed out (nor
    reported), however long it stays empty; once written and closed it is read."""
    from asapo_pipelines.sdk.dirwatch import DirectoryEvents

    events = DirectoryEvents(tmp_path, writes=True)
    if not events.available:
        pytest.skip("no inotify here")
    watcher = ScanFileWatcher(tmp_path, "*.xdi", settle_seconds=0.1)
    path = tmp_path / "scan_000.xdi"
    path.touch()
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        assert watcher.poll(*events.wait_changes(0.1)) == []
    done = threading.Event()

    def write() -> None:
        with path.open("w") as f:
            for part in chunks():
                f.writelines(part)
                f.flush()
                time.sleep(0.4)  # longer than settle_seconds
            # set before the close, not after it: the close's event can be handed out before
            # this thread runs again
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    handed: list[Path] = []
    deadline = time.monotonic() + 10
    while not handed and time.monotonic() < deadline:
        handed = watcher.poll(*events.wait_changes(0.1))
        assert not handed or done.is_set(), "handed out before its writer closed it"
    writer.join()
    events.close()
    assert handed == [path]
