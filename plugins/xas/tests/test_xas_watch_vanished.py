"""Watch mode and a scan file that disappears while being written (the acquisition aborted and
removed it, or someone deleted it): the scientist is told, in the log, that this scan was not
processed. The same for the core `core.files` source."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from xas_procs import wait_until
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines.testing.harness import UnitHarness

HEADER = "".join(
    line
    for line in (DATA / P65_SCANS[0]).read_text().splitlines(keepends=True)
    if line.startswith("#")
)


def vanished(caplog: Any, name: str) -> list[str]:
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [text for text in said if name in text and "disappeared" in text]


def watch_and_delete(
    caplog: Any, harness: UnitHarness, path: Path, watching: Any, seen: Any
) -> Any:
    """Run the source in watch mode; once it watches, write `path` partly (kept open, as
    acquisition does), delete it once the source saw it, and wait for the warning. Returns what
    the source did."""
    thread = threading.Thread(target=harness.run_source, daemon=True)
    thread.start()
    try:
        # a file there before the watch begins is another case (sent, or settled, at start)
        assert wait_until(lambda: watching(harness.runner.unit), timeout=60), "not watching"
        with path.open("w") as writer:
            writer.write(HEADER)
            writer.flush()
            assert wait_until(lambda: seen(harness.runner.unit), timeout=60), "not seen"
            path.unlink()
        assert wait_until(lambda: vanished(caplog, path.name), timeout=60), caplog.text
    finally:
        harness.stop()
        thread.join()
    return harness.shutdown()


def test_a_scan_file_deleted_while_written_is_logged_once(tmp_path, caplog):
    # settling never ends within the test: the file is still being written when it goes
    params = {"directory": str(tmp_path), "pattern": "*.xdi", "watch": True, "settle_seconds": 3600}
    harness = UnitHarness("xas.scan-files", params)
    path = tmp_path / "scan_0001.xdi"

    def watching(unit: Any) -> bool:
        return getattr(unit, "watcher", None) is not None

    def seen(unit: Any) -> bool:
        return path in unit.watcher.waiting

    with caplog.at_level(logging.WARNING):
        result = watch_and_delete(caplog, harness, path, watching, seen)
    assert result.outputs == []
    (warning,) = vanished(caplog, path.name)
    assert "not processed" in warning


def test_a_file_deleted_before_it_settled_is_logged_by_core_files(tmp_path, caplog):
    params = {"directory": str(tmp_path), "pattern": "*.xdi", "watch": True, "settle_seconds": 3600}
    harness = UnitHarness("core.files", params)
    path = tmp_path / "scan_0002.xdi"

    def watching(unit: Any) -> bool:
        return getattr(unit, "waiting", None) is not None

    def seen(unit: Any) -> bool:
        return path.name in unit.waiting

    with caplog.at_level(logging.WARNING):
        result = watch_and_delete(caplog, harness, path, watching, seen)
    assert result.outputs == []
    (warning,) = vanished(caplog, path.name)
    assert "not sent" in warning
