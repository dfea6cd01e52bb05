"""Finding scan files: present files, and watch mode with files arriving while it runs."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.errors import XasError
from asapo_pipelines_xas.params import ScanFilesParams
from asapo_pipelines_xas.scanfiles import ScanFileWatcher, list_scan_files, read_for_params


def test_present_files_by_name_and_mtime(tmp_path):
    for i, name in enumerate(reversed(P65_SCANS)):
        shutil.copy(DATA / name, tmp_path / name)
        (tmp_path / name).touch()
        time.sleep(0.01 * (i + 1))
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / ".partial.xdi").write_text("being copied")
    by_name = list_scan_files(tmp_path, "*.xdi")
    assert [p.name for p in by_name] == list(P65_SCANS)
    by_time = list_scan_files(tmp_path, "*.xdi", order="mtime")
    assert [p.name for p in by_time] == list(reversed(P65_SCANS))


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(XasError, match="does not exist"):
        list_scan_files(tmp_path / "nope")


def test_watch_mode_hands_out_each_file_once_when_complete(tmp_path):
    """Files copied in one by one (the second written slowly, in chunks) while polling."""
    settle = 0.6  # far longer than the pauses below, so a loaded machine does not matter
    watcher = ScanFileWatcher(tmp_path, "*.xdi", settle_seconds=settle)
    source = [DATA / P65_SCANS[0], DATA / P65_SCANS[1], DATA / "cu_metal_rt.xdi"]
    finished: dict[str, float] = {}

    def acquire() -> None:
        for i, path in enumerate(source):
            target = tmp_path / f"scan_{i:03d}.xdi"
            content = path.read_bytes()
            with target.open("wb") as out:
                # the acquisition writes the file in pieces, pausing much less than `settle`
                for start in range(0, len(content), len(content) // 4 + 1):
                    out.write(content[start : start + len(content) // 4 + 1])
                    out.flush()
                    time.sleep(0.05)
            finished[target.name] = time.monotonic()
            time.sleep(0.1)

    writer = threading.Thread(target=acquire)
    writer.start()
    handed: list[tuple[str, float]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(handed) < len(source):
        handed += [(p.name, time.monotonic()) for p in watcher.poll()]
        time.sleep(0.02)
    writer.join()
    for _ in range(10):  # nothing more comes, however often it is asked
        assert watcher.poll() == []
        time.sleep(0.02)
    assert [name for name, _ in handed] == [f"scan_{i:03d}.xdi" for i in range(3)]
    for name, when in handed:
        # never before the file was complete, and each reads as a whole scan
        assert when >= finished[name]
        assert len(read_for_params(tmp_path / name, ScanFilesParams(directory=str(tmp_path)))) > 300


def test_watcher_skips_what_a_restarted_unit_already_sent(tmp_path):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    watcher = ScanFileWatcher(tmp_path, "*.xdi", settle_seconds=0, done=[tmp_path / P65_SCANS[0]])
    assert [p.name for p in watcher.poll()] == [P65_SCANS[1]]
    assert watcher.poll() == []


def test_read_for_params_applies_mapping_and_overrides(tmp_path):
    params = ScanFilesParams(
        directory=str(DATA),
        columns={"energy": "mono_energy", "iref": 13, "if": 12},
        sample="goethite",
    )
    scan = read_for_params(DATA / P65_SCANS[0], params)
    assert scan.metadata["columns"]["energy"] == "mono_energy"
    assert scan.metadata["columns"]["iref"] == "VFC04"
    assert scan.metadata["columns"]["if"] == "VFC03"
    assert scan.metadata["sample"] == "goethite"


def test_watch_mode_takes_a_file_renamed_or_closed_into_place_without_settling(tmp_path):
    """inotify (close-write, moved-to): a complete scan is handed out at once, however long
    the settle time; a file still open for writing is not."""
    from asapo_pipelines.sdk.dirwatch import DirectoryEvents

    events = DirectoryEvents(tmp_path)
    if not events.available:
        pytest.skip("no inotify here: watch mode polls and settles (see test above)")
    watcher = ScanFileWatcher(tmp_path, "*.xdi", settle_seconds=3600)
    assert watcher.poll() == []
    hidden = tmp_path / ".scan_000.xdi"
    shutil.copy(DATA / P65_SCANS[0], hidden)
    events.wait(0.2)  # the hidden file's close: not a match
    open_file = (tmp_path / "scan_002.xdi").open("wb")
    open_file.write((DATA / P65_SCANS[1]).read_bytes())
    open_file.flush()
    hidden.rename(tmp_path / "scan_000.xdi")
    (tmp_path / "scan_001.xdi").write_bytes((DATA / P65_SCANS[1]).read_bytes())
    names: set[str] = set()
    deadline = time.monotonic() + 10
    while not {"scan_000.xdi", "scan_001.xdi"} <= names and time.monotonic() < deadline:
        names |= events.wait(1.0)
    ready = watcher.poll(names)
    assert [p.name for p in ready] == ["scan_000.xdi", "scan_001.xdi"]  # not the open one
    open_file.close()
    assert [p.name for p in watcher.poll(events.wait(5.0))] == ["scan_002.xdi"]
    assert watcher.poll(events.wait(0.2)) == []  # each file once
    events.close()
