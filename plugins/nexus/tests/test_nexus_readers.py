"""Another process holding the NeXus file: a scientist looks at the last results in a viewer (or
`h5py.File(path)` in a notebook) and starts the pipeline. HDF5 locks a file opened that way, and
closing the viewer is the remedy: the writer waits a while for it, says what to close and how
readers open the file instead, and goes on once it is closed. A reader that opens the file as
the README says never locks the writer out, not even a writer restarted under it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import pytest
from nexus_procs import Feeder, spawn, stop, wait_until
from nexus_testdata import P65_SCANS, p65_scan_message

from asapo_pipelines.sdk import UnitStorageError
from asapo_pipelines_nexus.errors import NexusWriterError
from asapo_pipelines_nexus.writer import KEY_ATTR, NexusWriter

#: how the README tells readers to open the file, as the writer's messages repeat it
READER_RECIPE = 'h5py.File(path, "r", swmr=True, locking=False)'

#: a reader in another process: opens the file as argv[2] says, says so, holds it argv[3] s,
#: or with "stdin" until the test closes its standard input (the scientist closes the viewer)
HOLD = """\
import sys, time, h5py
options = {"plain": {}, "recipe": {"swmr": True, "locking": False}}[sys.argv[2]]
with h5py.File(sys.argv[1], "r", **options):
    print("open", flush=True)
    if sys.argv[3] == "stdin":
        sys.stdin.read()
    else:
        time.sleep(float(sys.argv[3]))
"""


@contextmanager
def reader(path: Path, how: str, seconds: float | str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), how, str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def earlier_results(path: Path) -> None:
    """The file a previous run left, one entry in it."""
    with NexusWriter(path) as writer:
        writer.write("xas/scan", p65_scan_message(P65_SCANS[1]), "earlier/scan")


def writer_pipeline(tmp_path: Path) -> Path:
    pipeline = tmp_path / "writer.pipeline.yaml"
    pipeline.write_text(
        json.dumps(
            {
                "pipeline": "p65-nexus",
                "transport": {"embedded": {"path": "store"}},
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
    (tmp_path / "results").mkdir()
    earlier_results(tmp_path / "results" / "p65.nxs")
    return pipeline


def test_the_writer_waits_for_a_viewer_to_close_the_file_and_says_so(tmp_path):
    pipeline = writer_pipeline(tmp_path)
    path, log = tmp_path / "results" / "p65.nxs", tmp_path / "writer.log"
    feeder = Feeder(tmp_path / "store")
    # held until the writer says it waits: a reader holding for fixed seconds could close
    # before a slow-starting writer (a loaded machine) ever met it
    with reader(path, "plain", "stdin") as viewer:
        writer = spawn(pipeline, "writer", log)
        try:
            feeder.send("raw-scans", p65_scan_message(P65_SCANS[0]), "p65/scans|scans|key:0")
            feeder.finish("raw-scans")
            waiting = wait_until(lambda: "another process has" in log.read_text(), proc=writer)
            assert waiting, log.read_text()
            assert viewer.poll() is None  # the writer is waiting, not failing
            assert viewer.stdin is not None
            viewer.stdin.close()  # the scientist closes the viewer
            viewer.wait(30)
            assert writer.wait(120) == 0, log.read_text()
        finally:
            stop(writer)
            feeder.close()
    text = log.read_text()
    warning = next(line for line in text.splitlines() if "another process has" in line)
    assert " WARNING " in warning
    assert "results/p65.nxs open" in warning
    assert "waits up to 60 s for it to be closed: close it there" in warning
    assert READER_RECIPE in warning
    assert "the other process closed results/p65.nxs; nexus.writer goes on" in text
    with h5py.File(path, "r") as f:
        keys = sorted(str(g.attrs[KEY_ATTR]) for g in f.values())
    assert keys == ["earlier/scan", "p65/scans|scans|key:0"]


def test_a_writer_stopped_while_it_waits_for_a_reader_stops_at_once(tmp_path):
    pipeline = writer_pipeline(tmp_path)
    path, log = tmp_path / "results" / "p65.nxs", tmp_path / "writer.log"
    with reader(path, "plain", 60):
        writer = spawn(pipeline, "writer", log)
        try:
            waiting = wait_until(lambda: "another process has" in log.read_text(), proc=writer)
            assert waiting, log.read_text()
            # it exits on SIGTERM well within its 60 s wait (stop kills it after 10 s and fails)
            stop(writer, timeout=10)
        finally:
            stop(writer)
    assert "stopped while waiting for another process to close results/p65.nxs" in log.read_text()


def test_a_reader_that_stays_gets_one_sentence_naming_what_to_close(tmp_path):
    path = tmp_path / "p65.nxs"
    earlier_results(path)
    with reader(path, "plain", 60):
        started = time.monotonic()
        with pytest.raises(NexusWriterError) as caught:
            NexusWriter(path, reader_wait=1.5).open()
        assert time.monotonic() - started >= 1.5
    message = str(caught.value)
    assert message.startswith(f"another process still has {path} open after 2 s (HDF5 locks")
    assert "close it there (a restarted writer waits again)" in message
    # a storage error, not a configuration one: the worker's restarts apply (not exit 78)
    assert isinstance(caught.value, UnitStorageError)
    assert message.endswith(f"open it with {READER_RECIPE}")
    assert "\n" not in message
    # the reader gone, the writer opens the file (and its own lock was released)
    with NexusWriter(path, reader_wait=0) as writer:
        assert writer.has("earlier/scan")


def test_a_reader_opening_the_file_as_documented_never_locks_the_writer_out(tmp_path):
    """The file is read while a writer holds it, and a writer starts (or restarts after a crash)
    while such a reader has it open."""
    path = tmp_path / "p65.nxs"
    earlier_results(path)
    # reader_wait=0: a writer locked out would raise at once instead of waiting
    with reader(path, "recipe", 60), NexusWriter(path, reader_wait=0) as writer:
        writer.write("xas/scan", p65_scan_message(P65_SCANS[0]), "new/scan")
    with h5py.File(path, "r") as f:
        assert len(f) == 2


README = Path(__file__).resolve().parents[1] / "README.md"
#: each reader as the README names it, in a process of its own as a user's would be
LIVE_READERS = {
    "plain": "import h5py, sys; print(list(h5py.File(sys.argv[1], 'r')))",
    "recipe": "import h5py, sys; "
    "print(list(h5py.File(sys.argv[1], 'r', swmr=True, locking=False)))",
    "silx": "import silx.io, sys; print(list(silx.io.open(sys.argv[1])))",
    "nexpy": "from nexusformat.nexus import nxload; import sys; print(list(nxload(sys.argv[1])))",
}


def _readme_copy_recipe() -> str:
    """The README's code that copies the live file for NeXpy (the block that writes copy.nxs)."""
    blocks = README.read_text().split("```python\n")[1:]
    block = next((b.split("```")[0] for b in blocks if '"copy.nxs", "w"' in b), None)
    assert block is not None, "the README shows no copy of the live file for NeXpy"
    return textwrap.dedent(block)


def _read(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_a_file_the_pipeline_writes_reads_as_the_readme_says(tmp_path):
    """While the writer holds the file: the usual open and NeXpy's fail with HDF5's "open for
    write", the README's h5py call and silx read it, and the README's copy reads in NeXpy."""
    pytest.importorskip("nexusformat.nexus")
    path = tmp_path / "results" / "p65.nxs"
    with NexusWriter(path) as writer:
        writer.write("xas/scan", p65_scan_message(P65_SCANS[0]), "p65/scans|scans|key:0")
        for how in ("plain", "nexpy"):
            failed = _read(LIVE_READERS[how], str(path))
            assert failed.returncode != 0, how
            assert "file is already open for write" in failed.stderr, how
        assert _read(LIVE_READERS["recipe"], str(path)).stdout.strip() == "['entry1']"
        if importlib.util.find_spec("silx") is not None:
            assert _read(LIVE_READERS["silx"], str(path)).stdout.strip() == "['entry1']"
        copied = _read(_readme_copy_recipe(), cwd=tmp_path)
        assert copied.returncode == 0, copied.stderr
        assert "entry1:NXentry" in copied.stdout
