"""Resuming a watch-mode run over a directory of files it sent already (an outside tester: 2,000
scan files, Ctrl-C after 1,032 were sent). The resumed source read and parsed every file it had
sent before it sent anything new: 5 minutes before the first new scan, at the speed of reading
new files, and nothing said what it did. Now a file whose size and modification time are what
they were when it was sent is passed over without being opened, the summary counts such files
(`skipped_unread`) and the log says so in one line; the new file is sent. Real `pipeline run`
processes, stopped as a user stops them (Ctrl-C), on noisy copies of the real P65 scans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from xas_procs import (
    PIPELINE,
    last_status,
    pipeline_command,
    read,
    running,
    wait_until,
    watch_units,
    write_pipeline,
)
from xas_testdata import P65_SCANS, p65_variant

#: files sent by the first run
OLD = 200


def _start(pipeline: Path) -> subprocess.Popen[bytes]:
    """`pipeline run FILE` in its folder, in a session of its own (a terminal's Ctrl-C goes to
    the whole process group)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(pipeline.parent / "cache")
    out = open(pipeline.parent / "run.log", "ab")  # noqa: SIM115  (the process holds it)
    return subprocess.Popen(
        [PIPELINE, "run", str(pipeline)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
        start_new_session=True,
    )


def _ctrl_c(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _summary(store: Path) -> dict[str, Any]:
    try:
        return dict(last_status(store, "p65-many", "scans").get("summary") or {})
    except Exception:  # no status stream yet: the worker is starting
        return {}


def _first_run(tmp_path: Path, count: int) -> Path:
    """`count` noisy copies of the P65 scans in incoming/, sent by a watch-mode run stopped
    with Ctrl-C once it sent them all: the pipeline file."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in range(count):
        p65_variant(P65_SCANS[i % 2], incoming / f"scan_{i:04d}.xdi", seed=i, noise=2e-4)
    pipeline = write_pipeline(
        tmp_path, "p65-many", {"scans": watch_units(settle_seconds=0.5)["scans"]}
    )
    store = tmp_path / "store"
    first = _start(pipeline)
    try:
        assert wait_until(lambda: len(read(store, "raw-scans")) >= count, 600, [first])
    finally:
        _ctrl_c(first)
    assert len(read(store, "raw-scans")) == count
    return pipeline


def _files_sent(store: Path) -> list[str]:
    return [scan["metadata"]["file"] for _, scan in read(store, "raw-scans")]


def _said(pipeline: Path, words: str) -> list[str]:
    """The lines of the source's log that hold `words` (`pipeline logs FILE scans`)."""
    logs = pipeline_command(pipeline, "logs", "scans")
    assert logs.returncode == 0, logs.stderr
    return [line for line in logs.stdout.splitlines() if words in line]


def test_a_resumed_watch_skips_the_files_it_sent_unread(tmp_path: Path) -> None:
    pipeline = _first_run(tmp_path, OLD)
    store = tmp_path / "store"
    resumed = _start(pipeline)
    try:
        assert wait_until(lambda: running(store, "p65-many", "scans"), 120, [resumed])
        new = p65_variant(
            P65_SCANS[0], tmp_path / "incoming" / "scan_new.xdi", seed=OLD, noise=2e-4
        )
        assert wait_until(lambda: len(read(store, "raw-scans")) > OLD, 600, [resumed])
        assert wait_until(lambda: _summary(store).get("scans_sent") == OLD + 1, 60, [resumed])
        summary = _summary(store)
        status = last_status(store, "p65-many", "scans")
    finally:
        _ctrl_c(resumed)
    assert _files_sent(store)[OLD:] == [new.name]  # the new file, and none of the old ones again
    assert summary.get("skipped_unread") == OLD, json.dumps(summary)
    # and in the counters `pipeline status` shows (`Source.already_sent`)
    assert status.get("duplicates_skipped") == OLD, json.dumps(status)
    said = _said(pipeline, "skipped unread")
    assert len(said) == 1, said
    assert "INFO" in said[0], said
    assert f"{OLD} files already sent, skipped unread" in said[0], said


def test_a_file_changed_while_stopped_is_read_again_after_the_new_ones(tmp_path: Path) -> None:
    """A file whose size or time differs from what was sent is read and hashed as before (and
    said to have changed); a new file does not wait behind it."""
    count = 20
    pipeline = _first_run(tmp_path, count)
    store = tmp_path / "store"
    changed = p65_variant(
        P65_SCANS[1], tmp_path / "incoming" / "scan_0003.xdi", seed=99, noise=2e-4
    )
    new = p65_variant(P65_SCANS[0], tmp_path / "incoming" / "scan_new.xdi", seed=98, noise=2e-4)
    resumed = _start(pipeline)
    try:
        assert wait_until(lambda: _summary(store).get("scans_sent") == count + 2, 600, [resumed])
        summary = _summary(store)
    finally:
        _ctrl_c(resumed)
    # name order would put scan_0003 first: the new file comes first
    assert _files_sent(store)[count:] == [new.name, changed.name]
    assert summary.get("skipped_unread") == count - 1, json.dumps(summary)
    said = _said(pipeline, "changed since an earlier run read and sent it")
    assert len(said) == 1, said
    assert f"scan file {changed.name} changed since an earlier run" in said[0]
    assert "sending it again (version 2" in said[0]
