"""A run resumed after a session that sent inputs to the error stream says so on its resume line,
with the command that lists them. Before, the line said only "resuming run r1 of pipeline files
(unchanged)": the inputs turned away before are not turned away again (the error stream holds
each once), so the resumed session's summary said nothing of them either, and the user took
everything from before to be fine. Real `pipeline` commands, real workers, the embedded store.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_pipeline

FILE = "files.pipeline.yaml"
DOC = {
    "pipeline": "files",
    "units": {
        "files": {"unit": "core.files", "params": {"directory": "in"}, "outputs": {"files": "raw"}},
        # text of a file that is not UTF-8 is refused: that input goes to the error stream
        "sink": {
            "unit": "core.jsonl-sink",
            "params": {"path": "out.jsonl", "payload": "text"},
            "inputs": {"messages": "raw"},
        },
    },
}


def _run(*args: str, cwd: Path):
    done = run_pipeline(*args, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_resumed_run_names_the_inputs_its_earlier_sessions_sent_to_the_error_stream(
    tmp_path: Path,
) -> None:
    (tmp_path / FILE).write_text(json.dumps(DOC, indent=2))  # JSON is YAML
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("a\n")
    (inputs / "bad.txt").write_bytes(b"\xff\xfe not text\n")
    first = _run("run", FILE, cwd=tmp_path)
    assert "1 message went to the error stream (sink 1)" in first.stdout, first.stdout

    (inputs / "b.txt").write_text("b\n")  # more data: a plain `run` resumes r1
    for args in (("run", FILE), ("run", FILE, "--resume")):
        (inputs / f"{len(args)}.txt").write_text("more\n")
        again = _run(*args, cwd=tmp_path)
        line = next(x for x in again.stdout.splitlines() if x.startswith("resuming run r1"))
        listed = f"`pipeline tail {tmp_path / FILE} errors --run r1` lists it"
        assert line == (
            "resuming run r1 of pipeline files (unchanged); 1 input of its earlier sessions is "
            f"in the error stream (sink 1): {listed}"
        ), again.stdout
        # the session itself turned nothing away: its own summary has no errors line
        assert "went to the error stream" not in again.stdout, again.stdout

    # and the command it names lists that input
    tail = _run("tail", str(tmp_path / FILE), "errors", "--run", "r1", cwd=tmp_path)
    assert len(tail.stdout.strip().splitlines()) == 1, tail.stdout
    assert "not UTF-8 text" in tail.stdout, tail.stdout
