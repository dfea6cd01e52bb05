"""Watch mode and a processed scan file replaced by another complete scan of the same length
(an outside tester's `cp` of another scan over it). The handling was right (version 2, the
first marked superseded) but the warning said the writer "closed it between chunks" and
called the complete first read "a fragment". It now says the file was rewritten with
different content and that version 2 supersedes version 1; the "between chunks" wording stays
for a file that grew after its first read (test_xas_watch_closed_between_chunks). A real worker
on the real P65 file."""

from __future__ import annotations

import shutil
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
from xas_testdata import DATA, P65_SCANS, p65_variant

from asapo_pipelines_xas.readers import read_scan

SCAN = P65_SCANS[0]


def _sent_again(store: Path) -> bool:
    summary = last_status(store, "p65-rewrite", "scans").get("summary") or {}
    return bool(summary.get("sent_again"))


def test_a_file_rewritten_with_other_content_is_said_to_be_so(tmp_path: Path) -> None:
    if not inotify_available(tmp_path):
        pytest.skip("no inotify here: the first read is not taken at the writer's close")
    (tmp_path / "incoming").mkdir()
    other = p65_variant(SCAN, tmp_path / "other.xdi", seed=7, noise=2e-4)
    points = len(read_scan(DATA / SCAN))
    assert len(read_scan(other)) == points  # the same length: only the content differs
    pipeline = write_pipeline(tmp_path, "p65-rewrite", {"scans": watch_units()["scans"]})
    store, target = tmp_path / "store", tmp_path / "incoming" / SCAN
    source = spawn(pipeline, "scans", tmp_path)
    try:
        # the worker is watching (a fixed wait was too short on a loaded machine)
        assert wait_until(lambda: running(store, "p65-rewrite", "scans"), 60, [source])
        shutil.copyfile(DATA / SCAN, target)
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 1, 30, [source])
        shutil.copyfile(other, target)  # another complete scan over the processed one
        assert wait_until(lambda: len(read(store, "raw-scans")) >= 2, 30, [source])
        # the worker's status record carries the summary of the second send
        assert wait_until(lambda: _sent_again(store), 30, [source])
        summary = last_status(store, "p65-rewrite", "scans").get("summary") or {}
    finally:
        assert stop(source) == 0
    versions = [v["metadata"].get("file_version", 1) for _, v in read(store, "raw-scans")]
    assert versions == [1, 2]
    (again,) = summary.get("sent_again") or [{}]
    assert again.get("rewritten") is True, summary
    log = (tmp_path / "scans.log").read_text()
    said = [line for line in log.splitlines() if "WARNING" in line and SCAN in line]
    assert len(said) == 1, log
    assert (
        f"scan file {SCAN} was rewritten after it was read, with different content: sending it "
        f"again (version 2, {points} points), which supersedes version 1"
    ) in said[0]
    for wrong in ("between chunks", "fragment", "closed by its writer"):
        assert wrong not in said[0]
