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


def test_a_run_whose_unit_turned_every_input_away_exits_65_naming_it(tmp_path):
    """A batch script could not tell a run that processed nothing (a folder of files that
    cannot be read; a mode that fits none of them) from a good one: both exited 0. Now the run
    exits 65 (EX_DATAERR) with one sentence naming the unit that processed none of its inputs,
    while a run that turned only some away still exits 0 (the test above)."""
    shutil.copy(ROOT / "examples" / "p65-xas.pipeline.yaml", tmp_path)
    (tmp_path / "data").mkdir()
    for n in range(2):
        (tmp_path / "data" / f"20K_GOE_Fe_K_240.0000{n}.xdi").write_text(f"not a scan {n}\n")
    done = run_pipeline("run", "p65-xas.pipeline.yaml", cwd=tmp_path, timeout=600)
    assert done.returncode == 65, done.stdout + done.stderr
    told = "but scans processed none of its 2 inputs: all went to the error stream"
    assert told in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr

    # readable files that the normalising unit refuses, every one: mu with no It in a
    # transmission pipeline (the Fe foil of shared/data/xas has only mutrans and i0)
    foil = ROOT.parent / "shared" / "data" / "xas" / "fe_metal_rt.xdi"
    if not foil.exists():
        pytest.skip("needs ../shared/data/xas beside the clone")
    shutil.rmtree(tmp_path / "data")
    (tmp_path / "data").mkdir()
    shutil.copy(foil, tmp_path / "data" / "fe_metal_rt.xdi")
    done = run_pipeline(
        "run", "p65-xas.pipeline.yaml", "--fresh", "--set", "scans.pattern=*.xdi",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 65, done.stdout + done.stderr
    told = "but normalize processed none of its one input: all went to the error stream"
    assert told in done.stderr, done.stderr


def test_a_resumed_run_whose_only_new_files_are_bad_exits_0_as_a_fresh_run_of_them_does(tmp_path):
    """An outside plugin author's resumed run exited 65, "processed none of its 2 inputs", for
    two unreadable new files beside the good ones sent in the run's first session; the same
    files run with --fresh exited 0. The run has its outputs: it exits 0, and says the 2."""
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    shutil.copy(ROOT / "examples" / "p65-xas.pipeline.yaml", tmp_path)
    first = run_pipeline("run", "p65-xas.pipeline.yaml", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    for n in (7, 8):
        (tmp_path / "data" / f"20K_GOE_Fe_K_240.0000{n}.xdi").write_text("not a scan\n")
    again = run_pipeline("run", "p65-xas.pipeline.yaml", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "processed none" not in again.stdout + again.stderr
    assert "2 messages went to the error stream (scans 2)" in again.stdout, again.stdout[-2000:]
