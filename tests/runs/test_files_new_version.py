"""`core.files` and a file whose content changed after it was sent. Before, the file name was
the output's key, so exactly-once de-duplication dropped the new content without a word and
the results stayed those of the old version. Now it is sent again as the next version (with a
warning), and a file only touched, or rewritten with the same bytes, is not sent again. Real
`pipeline` commands, core units, the embedded store."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from helpers import core_pipeline, run_pipeline, wait_for


def _sent(out: Path) -> list[dict[str, Any]]:
    """The metadata of each message the sink wrote, in order."""
    if not out.exists():
        return []
    return [json.loads(line)["metadata"] for line in out.read_text().splitlines()]


def _touch(path: Path) -> None:
    """A later modification time, the same content (no sleep needed)."""
    mtime = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(mtime, mtime))


def _expected(path: Path, version: int) -> dict[str, Any]:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "version": version}


def _run(file: Path) -> str:
    done = run_pipeline("run", str(file), cwd=file.parent, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_file_changed_between_runs_is_sent_again_as_its_next_version(tmp_path: Path) -> None:
    files, out = tmp_path / "data", tmp_path / "out.jsonl"
    files.mkdir()
    scan = files / "scan.txt"
    scan.write_text("first version\n")
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    _run(file)
    first = _expected(scan, 1)

    scan.write_text("second, corrected version\n")
    output = _run(file)  # resumes r1
    second = _expected(scan, 2)
    sent = _sent(out)
    assert [{k: m.get(k) for k in first} for m in sent] == [first, second]
    assert sent[1]["replaces"] == "scan.txt"  # the key the first version was sent with
    warning = f"{scan.as_posix()} changed since it was sent; sent again as version 2"
    assert warning in output
    assert "Traceback" not in output

    # touched, not changed: nothing is sent again, nothing is said
    _touch(scan)
    output = _run(file)
    assert len(_sent(out)) == 2
    assert "changed since it was sent" not in output

    # back to the first content: still a new version, numbered on
    scan.write_text("first version\n")
    _run(file)
    sent = _sent(out)
    assert len(sent) == 3
    assert {k: sent[2].get(k) for k in first} == _expected(scan, 3)
    assert sent[2]["replaces"].startswith("scan.txt@2-")


def test_watch_mode_sends_a_file_changed_after_it_was_sent_as_a_new_version(
    tmp_path: Path,
) -> None:
    files, out = tmp_path / "data", tmp_path / "out.jsonl"
    files.mkdir()
    scan = files / "a.txt"
    scan.write_text("first version\n")
    file = core_pipeline(tmp_path, files=files, out=out, watch=True, store="store")
    started = run_pipeline("run", str(file), "--detach", cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        wait_for(lambda: len(_sent(out)) == 1, 60, "the first version")
        scan.write_text("second, corrected version\n")
        wait_for(lambda: len(_sent(out)) == 2, 60, "the second version")
        assert [m["version"] for m in _sent(out)] == [1, 2]
        assert _sent(out)[1]["sha256"] == _expected(scan, 2)["sha256"]

        # a touched file settles no later than a file written after it, and in name order
        # first: once the later file is in, the touched one was looked at and not sent
        _touch(scan)
        (files / "z.txt").write_text("another file\n")
        wait_for(lambda: len(_sent(out)) == 3, 60, "the other file")
        assert [m["name"] for m in _sent(out)] == ["a.txt", "a.txt", "z.txt"]
    finally:
        stopped = run_pipeline("stop", str(file), cwd=tmp_path, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    logs = run_pipeline("logs", str(file), "files", "--stderr", cwd=tmp_path)
    warnings = [line for line in logs.stdout.splitlines() if "changed since it was sent" in line]
    assert len(warnings) == 1, logs.stdout
    assert f"{scan.as_posix()} changed since it was sent; sent again as version 2" in warnings[0]
