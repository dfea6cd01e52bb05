"""`core.jsonl-sink` whose file's folder cannot be made (a path under a file, under /proc) says
so in one sentence naming the folder, and the unit is not restarted. It said Python's own
words, `FileNotFoundError: [Errno 2] No such file or directory: '/proc/nope'` (an outside
tester). Real `pipeline run`."""

from __future__ import annotations

from pathlib import Path

from helpers import run_pipeline


def test_a_sink_folder_that_cannot_be_made_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "blocker").write_text("a file where the sink wants a folder\n")
    file = tmp_path / "folder.pipeline.yaml"
    file.write_text(
        "pipeline: folder\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: blocker/out/all.jsonl},\n"
        "         inputs: {messages: raw}}\n"
    )
    ran = run_pipeline("run", file.name, cwd=tmp_path, timeout=180)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert (
        "unit core.jsonl-sink failed to start: cannot make the folder blocker/out of its file "
        "blocker/out/all.jsonl: Not a directory (blocker/out)"
    ) in ran.stderr, ran.stderr
    assert "NotADirectoryError" not in ran.stderr
