"""The XAS workers' logs keep their INFO lines. Importing larch sets the root logger's level to
WARNING (checked here at test time, with the installed xraylarch), which had emptied
`pipeline logs FILE normalize` and `... merge` of every line but warnings: the worker's
"finished" counts, and the restore progress the docs tell operators to look for there.

Real files (SOURCES.md), real xraylarch, real `pipeline` subprocesses."""

from __future__ import annotations

import shutil
import subprocess
import sys

from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA


def test_larch_turns_the_root_logger_down_when_imported():
    """The cause, as the installed xraylarch behaves: without it the test below proves
    nothing about larch."""
    code = (
        "import logging; logging.basicConfig(level='INFO'); import larch; "
        "print(logging.getLogger().getEffectiveLevel())"
    )
    level = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert level.stdout.split()[-1] == "30", level.stdout + level.stderr


def test_the_normalize_worker_log_keeps_its_info_lines(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / "cu_metal_rt.xdi", tmp_path / "data" / "cu_metal_rt.xdi")
    pipeline = write_pipeline(tmp_path, "foils", scan_chain("data", {"mode": "mu"}))
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    log = pipeline_command(pipeline, "logs", "normalize")
    assert log.returncode == 0, log.stdout + log.stderr
    lines = log.stdout.splitlines()
    # the worker's last line: what it did, at INFO
    assert any(
        " INFO " in line and "finished" in line and "1 processed" in line for line in lines
    ), log.stdout + log.stderr
