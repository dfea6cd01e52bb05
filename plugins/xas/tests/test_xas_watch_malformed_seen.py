"""A scan file that cannot be read, during a live run in watch mode. The scientist watching the
run saw `errors 1` in the live table and nothing else: `pipeline logs FILE scans` did not name
the file, and `pipeline status` showed no summary of the source (a source's summary was taken
only when it ended), so the "malformed" list with the reason appeared after the beamtime. Now
the source says it in its log at once, and its summary is in every status record while it
runs; a file read whole later leaves that list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xas_procs import pipeline_command, wait_until, write_pipeline
from xas_testdata import DATA, P65_SCANS

BROKEN = "detector_dump.xdi"


def _scans_summary(pipeline: Path) -> dict:
    done = pipeline_command(pipeline, "status", "--json")
    if done.returncode != 0:
        return {}
    (unit,) = (u for u in json.loads(done.stdout)["units"] if u["task"] == "scans")
    return unit.get("summary") or {}


def test_a_scan_file_that_cannot_be_read_is_named_while_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    units = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": "incoming", "pattern": "*.xdi", "watch": True},
            "outputs": {"scans": "raw-scans"},
        }
    }
    pipeline = write_pipeline(tmp_path, "live-malformed", units)
    started = pipeline_command(pipeline, "run", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        # a scan that reads, and a file the DAQ left that is no scan (written, then renamed
        # in, as a DAQ does: complete when it appears)
        shutil.copy(DATA / P65_SCANS[0], tmp_path / "incoming" / P65_SCANS[0])
        part = tmp_path / "incoming" / ".dump.part"
        part.write_bytes(b"\x00\x05\x98 not a scan\n" * 40)
        part.rename(tmp_path / "incoming" / BROKEN)

        # while the run goes on, `pipeline status` shows the source's summary
        assert wait_until(lambda: "malformed" in _scans_summary(pipeline), timeout=120)
        summary = _scans_summary(pipeline)
        assert summary["scans_sent"] == 1
        (bad,) = summary["malformed"]
        assert bad["file"] == BROKEN
        assert BROKEN in bad["reason"]

        # and its log names the file and why, as it happens
        logs = pipeline_command(pipeline, "logs", "scans")
        said = [line for line in (logs.stdout + logs.stderr).splitlines() if BROKEN in line]
        assert len(said) == 1, logs.stdout + logs.stderr
        assert "WARNING" in said[0]
        assert said[0].endswith("not processed unless it changes (on the error stream)")
        assert bad["reason"] in said[0]

        # the DAQ finishes the file (a scan after all): it is sent, and the summary lists only
        # files still unreadable; its error record stays, the log says it reads now
        done = tmp_path / "incoming" / ".dump.part"
        shutil.copy(DATA / P65_SCANS[1], done)
        done.replace(tmp_path / "incoming" / BROKEN)
        assert wait_until(lambda: _scans_summary(pipeline).get("scans_sent") == 2, timeout=120)
        assert "malformed" not in _scans_summary(pipeline)
        logs = pipeline_command(pipeline, "logs", "scans")
        # `pipeline logs` prints the worker's stderr, where it logs, on its own stdout
        assert f"scan file {BROKEN}, unreadable before, reads now: sent" in logs.stdout
    finally:
        stopped = pipeline_command(pipeline, "stop")
        assert stopped.returncode == 0, stopped.stderr
