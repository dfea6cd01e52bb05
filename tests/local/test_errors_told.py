"""A foreground run whose every task exited 0 may still have turned messages away to the error
stream (a malformed scan file): the run's output said so only in the table's errors column.
It now ends with one line naming how many, from which unit, and the command that reads them.
Real `pipeline run` of the P65 example with a truncated scan file beside the good ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import run_pipeline

pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus plugin (plugins/nexus)")

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_that_sent_messages_to_the_error_stream_says_so_at_its_end(tmp_path):
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    shutil.copy(ROOT / "examples" / "p65-xas.pipeline.yaml", tmp_path)
    good = (tmp_path / "data" / "20K_GOE_Fe_K_240.00001.xdi").read_text()
    # cut inside the data: the reader refuses the file, the scans go on
    (tmp_path / "data" / "20K_GOE_cut.xdi").write_text(good[: good.index("\n", 3000)] + "\n7")
    done = run_pipeline("run", "p65-xas.pipeline.yaml", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    file = str(tmp_path / "p65-xas.pipeline.yaml")
    told = "1 message went to the error stream (scans 1): read it with "
    told += f"`pipeline tail {file} errors`"
    assert told in done.stdout, done.stdout[-2000:]
    errors = run_pipeline("tail", "p65-xas.pipeline.yaml", "errors", cwd=tmp_path)
    assert "20K_GOE_cut.xdi" in errors.stdout, errors.stdout
