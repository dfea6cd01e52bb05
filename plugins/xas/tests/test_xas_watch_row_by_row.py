"""Watch mode and a DAQ that writes the header first, then closes its file after every data row
(found by an outside tester). Each close made the file look complete: the header alone, then
one row, were read and reported as malformed ("no data rows after the header"), so the run
counted errors for a scan that then read whole. A file with too few rows to be a scan is now
waited on, as an empty file is; one that stays so is reported, once, when the watch ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from xas_procs import last_status, read, spawn, stop, wait_until, write_pipeline
from xas_testdata import DATA, P65_SCANS

NAME = "p65-row-by-row"
FILE = P65_SCANS[1]
LINES = (DATA / FILE).read_text().splitlines(keepends=True)
HEADER = [line for line in LINES if line.startswith("#")]
ROWS = [line for line in LINES if not line.startswith("#")]


def source_pipeline(tmp_path: Path) -> Path:
    """The scan source alone, watching `incoming/` (settling briefly: the test waits less)."""
    (tmp_path / "incoming").mkdir()
    units = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {
                "directory": "incoming",
                "pattern": "*.xdi",
                "watch": True,
                "settle_seconds": 0.4,
            },
            "outputs": {"scans": "raw-scans"},
        }
    }
    return write_pipeline(tmp_path, NAME, units)


def append_and_close(path: Path, lines: list[str]) -> None:
    """What the DAQ does for each row: open, append, close."""
    with path.open("a") as f:
        f.writelines(lines)


def summary(store: Path) -> dict[str, Any]:
    try:
        return last_status(store, NAME, "scans").get("summary") or {}
    except Exception:  # no status record yet (the worker is starting)
        return {}


def errors(store: Path) -> list[Any]:
    return read(store, f"{NAME}.errors", "scans")


def waiting_reason(store: Path) -> str | None:
    """Why the source waits on the file, as `pipeline status` shows it (None: it does not)."""
    waiting = {w["file"]: w["reason"] for w in summary(store).get("waiting_for_rows", [])}
    return waiting.get(FILE)


def said_or_reported(store: Path, reason: str) -> bool:
    """The source either waits on the file for `reason`, or (the old behaviour) reported it."""
    return (waiting_reason(store) or "").startswith(reason) or errors(store) != []


def test_a_file_closed_after_every_row_is_read_whole_and_no_error_is_counted(tmp_path):
    pipeline = source_pipeline(tmp_path)
    store, path = tmp_path / "store", tmp_path / "incoming" / FILE
    source = spawn(pipeline, "scans", tmp_path)
    try:
        # the DAQ starts the scan: the header, closed
        append_and_close(path, HEADER)
        assert wait_until(
            lambda: said_or_reported(store, "no data rows after the header"), 60, [source]
        )
        assert errors(store) == []
        # the first point, closed
        append_and_close(path, ROWS[:1])
        assert wait_until(lambda: said_or_reported(store, "only 1 distinct energies"), 60, [source])
        assert errors(store) == []
        assert read(store, "raw-scans") == []

        # the rest of the scan, a row at a time, each closed
        def daq() -> None:
            for row in ROWS[1:]:
                append_and_close(path, [row])

        writer = threading.Thread(target=daq)
        writer.start()
        writer.join()
        whole = len(ROWS)
        assert wait_until(
            lambda: any(v["metadata"]["points_read"] == whole for _, v in read(store, "raw-scans")),
            60,
            [source],
        )
    finally:
        assert stop(source) == 0
    assert errors(store) == []
    scans = read(store, "raw-scans")
    # a pause of the writer longer than settle_seconds (a loaded machine) may send a part
    # first, as a version the whole file replaces; never a scan too short to be one
    assert scans[-1][1]["metadata"]["points_read"] == len(ROWS)
    assert all(v["metadata"]["points_read"] >= 20 for _, v in scans)
    final = summary(store)
    assert "malformed" not in final
    assert "waiting_for_rows" not in final
    # the scientist reads once that the source waits on the file, not once per row
    log = (tmp_path / "scans.log").read_text()
    assert log.count(f"scan file {FILE}: no data rows after the header so far: waiting") == 1


def test_a_file_that_stays_header_only_is_reported_once_when_the_watch_ends(tmp_path):
    pipeline = source_pipeline(tmp_path)
    store, path = tmp_path / "store", tmp_path / "incoming" / FILE
    append_and_close(path, HEADER)
    source = spawn(pipeline, "scans", tmp_path)
    try:
        assert wait_until(
            lambda: said_or_reported(store, "no data rows after the header"), 60, [source]
        )
        assert errors(store) == []  # while the watch goes on, it may still be written
    finally:
        assert stop(source) == 0
    (record,) = errors(store)
    assert record[1]["error"] == f"cannot read scan file {FILE}: no data rows after the header"
    assert record[1]["exception"].endswith("ScanFileError")
    (bad,) = summary(store)["malformed"]
    assert bad["file"] == FILE
    log = (tmp_path / "scans.log").read_text()
    assert "no data rows after the header: still so when the watch ended" in log

    # started again and stopped with the file unchanged: reported once in the run, not again
    source = spawn(pipeline, "scans", tmp_path)
    try:
        assert wait_until(lambda: waiting_reason(store) is not None, 60, [source])
    finally:
        assert stop(source) == 0
    assert len(errors(store)) == 1
