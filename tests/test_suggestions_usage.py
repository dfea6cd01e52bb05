"""`pipeline suggestions`'s usage line shows what may be left out: `pipeline suggestions FILE`
lists, so the action and the suggestion's ID are both optional (the line showed ID as required,
and a user who only wanted the listing was told to give one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIPELINE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_usage_line_shows_the_id_as_optional() -> None:
    result = _run("suggestions", "--help")
    assert result.returncode == 0, result.stderr
    usage = result.stdout.splitlines()[0]
    assert usage == "Usage: pipeline suggestions [OPTIONS] FILE [list|approve|reject] [ID]"


def test_a_missing_file_says_so_with_the_same_usage_line() -> None:
    result = _run("suggestions")
    assert result.returncode != 0
    assert "Usage: pipeline suggestions [OPTIONS] FILE [list|approve|reject] [ID]" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelled_file_names_the_pipeline_file_meant(tmp_path: Path) -> None:
    """As run, status and validate say it: the inbox is the bridge's, found from the file."""
    (tmp_path / "night.pipeline.yaml").write_text("pipeline: night\nunits: {}\n")
    result = subprocess.run(
        [PIPELINE, "suggestions", "nihgt.pipeline.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: no such file: nihgt.pipeline.yaml; did you mean night.pipeline.yaml?"
    )
