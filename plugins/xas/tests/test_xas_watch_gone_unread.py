"""Watch mode and a scan file copied in and removed about a millisecond later (an archiving
tool that moves files away at once): an outside tester found no log line and no record of it.
The watcher saw it (inotify reported it) but never listed it; it now says, once, that the file
appeared and was removed before it could be read and that nothing was sent for it. Real
inotify events of real file operations on the real P65 file."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from xas_procs import wait_until
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines.sdk.dirwatch import DirectoryEvents
from asapo_pipelines.testing.harness import UnitHarness
from asapo_pipelines_xas.scanfiles import ScanFileWatcher

SCAN = P65_SCANS[0]


def events_or_skip(directory: Path) -> DirectoryEvents:
    events = DirectoryEvents(directory, writes=True)
    if not events.available:
        pytest.skip("no inotify here: a file never listed is never seen")
    return events


def test_a_file_gone_before_the_watcher_listed_it_is_told_once(tmp_path: Path) -> None:
    events = events_or_skip(tmp_path)
    gone: list[Path] = []
    vanished: list[Path] = []
    watcher = ScanFileWatcher(
        tmp_path, "*.xdi", on_gone_unread=gone.append, on_vanished=vanished.append
    )
    try:
        assert watcher.poll() == []
        # the order is fixed: the copy and the removal both happen before the watcher looks
        shutil.copyfile(DATA / SCAN, tmp_path / SCAN)
        (tmp_path / SCAN).unlink()
        shutil.copyfile(DATA / SCAN, tmp_path / ".hidden.xdi")  # a copy tool's temporary name
        (tmp_path / ".hidden.xdi").unlink()
        changes = events.wait_changes(5)
        assert SCAN in changes.removed  # closed, then removed
        assert watcher.poll(*changes) == []
        # the same events again (a late event of the removed file) are not told twice
        assert watcher.poll(*changes) == []
    finally:
        events.close()
    assert gone == [tmp_path / SCAN]
    assert vanished == []


def test_the_source_logs_a_file_copied_in_and_removed_at_once(tmp_path: Path, caplog: Any) -> None:
    events_or_skip(tmp_path).close()
    params = {"directory": str(tmp_path), "pattern": "*.xdi", "watch": True, "settle_seconds": 3600}
    harness = UnitHarness("xas.scan-files", params)
    thread = threading.Thread(target=harness.run_source, daemon=True)

    def said() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and SCAN in r.getMessage()
        ]

    with caplog.at_level(logging.WARNING):
        thread.start()
        try:
            assert wait_until(lambda: getattr(harness.runner.unit, "watcher", None), 60)
            shutil.copyfile(DATA / SCAN, tmp_path / SCAN)
            (tmp_path / SCAN).unlink()
            assert wait_until(said, timeout=30), caplog.text
        finally:
            harness.stop()
            thread.join()
        result = harness.shutdown()
    assert result.outputs == []
    # one line, whether the worker listed the file mid-copy or never saw it listed
    assert said() == [
        f"scan file {SCAN} appeared and was removed before it could be read: nothing was sent "
        "for it"
    ]
