"""A second pipeline's writer on a file another pipeline's writer holds: it does not start, and
says in one sentence which pipeline holds the file (run, unit, process, host) and what to do.
It said only "another nexus.writer is writing <file>; one writer per file", which left the
person starting the second pipeline to find out which of the beamline's pipelines it was."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from nexus_procs import Feeder, spawn, stop, wait_until
from nexus_testdata import P65_SCANS, p65_scan_message


def _pipeline(work: Path, name: str) -> Path:
    """A writer-only pipeline `name` with a store of its own, writing results/p65.nxs."""
    path = work / f"{name}.pipeline.yaml"
    path.write_text(
        json.dumps(
            {
                "pipeline": name,
                "transport": {"embedded": {"path": f"store-{name}"}},
                "streams": {"raw-scans": {"external": True}},
                "units": {
                    "writer": {
                        "unit": "nexus.writer",
                        "params": {"file": "results/p65.nxs"},
                        "inputs": {"scans": "raw-scans"},
                    }
                },
            }
        )
    )
    return path


def _holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def test_a_second_pipelines_writer_is_told_which_pipeline_holds_the_file(tmp_path):
    first, second = _pipeline(tmp_path, "ex"), _pipeline(tmp_path, "ex2")
    nxs = tmp_path / "results" / "p65.nxs"
    lock = nxs.with_name(nxs.name + ".lock")
    feeder = Feeder(tmp_path / "store-ex")
    holder = spawn(first, "writer", tmp_path / "ex.log")
    try:
        # the first writer holds the file once its lock file names it
        assert wait_until(lambda: _holder(lock).get("pid"), proc=holder), (
            tmp_path / "ex.log"
        ).read_text()
        held = _holder(lock)
        assert held["pipeline"] == "ex"
        assert held["run"] == "r1"
        assert held["unit"] == "writer"
        assert held["host"] == socket.gethostname()

        refused = spawn(second, "writer", tmp_path / "ex2.log")
        code = refused.wait(120)
        log = (tmp_path / "ex2.log").read_text()
        assert code != 0, log
        expected = (
            f"nexus.writer cannot write {nxs}: pipeline ex (run r1, unit writer, "
            f"process {held['pid']} on {held['host']}, since {held['since'].replace('T', ' ')}) "
            f"is writing it (it holds {lock.name}), and one file takes one writer at a time; "
            "wait until that run ends or is stopped, or set the `file` param of pipeline ex2's "
            "nexus.writer to another file"
        )
        assert expected in log, log
        assert "Traceback" not in log, log
        assert holder.poll() is None  # the first writer goes on

        # the first pipeline's writer still writes; once its run ends, the second one starts
        feeder.send("raw-scans", p65_scan_message(P65_SCANS[0]), "ex/scans|key:a")
        feeder.finish("raw-scans")
        assert holder.wait(120) == 0, (tmp_path / "ex.log").read_text()
    finally:
        stop(holder)
        feeder.close()
    later = Feeder(tmp_path / "store-ex2")
    again = spawn(second, "writer", tmp_path / "ex2-again.log")
    try:
        assert wait_until(lambda: _holder(lock).get("pipeline") == "ex2", proc=again), (
            tmp_path / "ex2-again.log"
        ).read_text()
        later.finish("raw-scans")
        assert again.wait(120) == 0, (tmp_path / "ex2-again.log").read_text()
    finally:
        stop(again)
        later.close()
