"""Watch mode and a DAQ that appends a block of lines to the scan file and closes it, again and
again (an outside tester's: 200 lines a second). With inotify the first close counts as the
end of the scan (the documented design), so a fragment is read and sent, and the whole file
later as version 2. The source said so with advice about settle_seconds, which does not apply
when the writer closed the file; it now says the writer closed it between chunks, after how
many points, and what to change at the DAQ, and its summary's `sent_again` says how far the
earlier read got and that it was taken at a close. A real worker on the real P65 file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from xas_procs import (
    inotify_available,
    last_status,
    read,
    running,
    spawn,
    stop,
    wait_until,
    watch_units,
    write_pipeline,
)
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.readers import read_scan

SCAN = P65_SCANS[1]
LINES = (DATA / SCAN).read_text().splitlines(keepends=True)
#: the DAQ's block of lines per close
BLOCK = 200


def test_a_file_closed_between_chunks_is_said_to_be_so(tmp_path: Path) -> None:
    if not inotify_available(tmp_path):
        pytest.skip("no inotify here: the first close is no event")
    (tmp_path / "incoming").mkdir()
    units = watch_units(settle_seconds=0.5)
    pipeline = write_pipeline(tmp_path, "p65-chunks", {"scans": units["scans"]})
    store, target = tmp_path / "store", tmp_path / "incoming" / SCAN
    source = spawn(pipeline, "scans", tmp_path)
    try:
        # the worker is watching: a file there before the watch begins is settled, not read
        # at its close (a fixed 3 s was too short on a loaded machine)
        assert wait_until(lambda: running(store, "p65-chunks", "scans"), 60, [source])
        time.sleep(0.5)
        with target.open("a") as f:
            f.writelines(LINES[:BLOCK])
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 1, 30, [source])
        for start in range(BLOCK, len(LINES), BLOCK):
            with target.open("a") as f:
                f.writelines(LINES[start : start + BLOCK])
            time.sleep(0.1)  # shorter than settle_seconds: one version for the rest
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 2, 30, [source])
        time.sleep(1.0)  # the worker's status record carries the summary
        summary = last_status(store, "p65-chunks", "scans").get("summary") or {}
    finally:
        assert stop(source) == 0
    fragment = tmp_path / "fragment.xdi"
    fragment.write_text("".join(LINES[:BLOCK]))
    points, whole = len(read_scan(fragment)), len(read_scan(DATA / SCAN))
    scans = read(store, "raw-scans")
    assert [v["metadata"]["points_read"] for _, v in scans] == [points, whole]
    assert summary.get("sent_again") == [
        {
            "file": SCAN,
            "version": 2,
            "points": whole,
            "replaced_points": points,
            "first_read": "at its writer's close",
        }
    ], summary
    log = (tmp_path / "scans.log").read_text()
    said = [line for line in log.splitlines() if "WARNING" in line and SCAN in line]
    assert len(said) == 1, log
    assert f"was closed by its writer after {points} points and written to again" in said[0]
    assert f"(version 2, {whole} points)" in said[0]
    assert "settle_seconds" not in said[0]
