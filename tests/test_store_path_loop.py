"""A store `path` that cannot be resolved (a symlink loop) is a configuration error said in one
sentence by every command that opens the store; `run`, `status`, `runs` and `tail` said
"internal error (RuntimeError: Symlink loop ...); this is a bug"."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import core_pipeline, run_pipeline


@pytest.mark.parametrize(
    "args",
    [("run",), ("status",), ("runs",), ("tail", "copied")],
    ids=lambda a: a[0],
)
def test_a_store_path_in_a_symlink_loop_is_one_sentence(tmp_path: Path, args: tuple) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "st2").symlink_to("st1")
    (tmp_path / "st1").symlink_to("st2")
    file = core_pipeline(
        tmp_path, files=tmp_path / "files", out=tmp_path / "out.jsonl", store="st1"
    )
    done = run_pipeline(args[0], str(file), *args[1:], cwd=tmp_path)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "internal error" not in said, said
    assert "Traceback" not in said, said
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, said
    assert "st1" in lines[0], said
    assert "loop" in lines[0].lower(), said
