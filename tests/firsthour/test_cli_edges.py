"""Edges a user meets at the prompt: output that cannot be written (a full disk, a closed pipe),
an empty `--set`, `status` at 80 columns, options that were accepted and ignored, and `tail` and
`schema` arguments that name nothing. Each is one sentence and a non-zero exit, never a
traceback, and never a silent success."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

import pytest

from helpers import CACHE_DIR, PIPELINE, run_pipeline

EXAMPLE = Path(__file__).parents[2] / "examples" / "files-to-jsonl.pipeline.yaml"
FULL = Path("/dev/full")
STDOUT_FULL = (
    "error: cannot write to standard output: No space left on device; free space where the "
    "output is redirected to, or redirect it elsewhere\n"
)

pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux)")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The core-only example (no deploy section, so no executor claims it) with its inputs."""
    text = EXAMPLE.read_text(encoding="utf-8").split("\ndeploy:")[0] + "\n"
    (tmp_path / "f.pipeline.yaml").write_text(text, encoding="utf-8")
    shutil.copytree(EXAMPLE.parent / "files", tmp_path / "files")
    return tmp_path


def _run(
    *args: str, stdout: IO[Any] | int, buffered: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` with stdout where the caller says; `buffered` as when PYTHONUNBUFFERED
    is unset (the last lines then reach stdout only at exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update({"COLUMNS": "200", "ASAPO_PIPELINES_CACHE_DIR": CACHE_DIR})
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    else:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [PIPELINE, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


# -- output that cannot be written -----------------------------------------------------------
@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize(
    "args",
    [
        ("list-units",),
        ("show-unit", "core.files", "--json"),
        ("graph", "f.pipeline.yaml"),
        ("validate", "types.pipeline.yaml"),
        ("schema",),
    ],
    ids=["list-units", "show-unit-json", "graph", "validate-invalid", "schema"],
)
def test_stdout_on_a_full_disk_is_one_sentence(work: Path, args: tuple[str, ...], buffered: bool):
    # a file with a type error: validate prints its problem on stdout
    text = (work / "f.pipeline.yaml").read_text().replace('pattern: "*.txt"', "pattern: 5")
    (work / "types.pipeline.yaml").write_text(text)
    with FULL.open("w") as full:
        out = _run(*args, stdout=full, buffered=buffered, cwd=work)
    assert out.returncode == 1
    assert out.stderr.endswith(STDOUT_FULL), out.stderr
    assert "Traceback" not in out.stderr
    assert "Exception ignored" not in out.stderr


@pytest.mark.parametrize("fmt", ["mermaid", "svg"])
def test_graph_output_file_on_a_full_disk_names_the_file(work: Path, fmt: str):
    if fmt == "svg" and shutil.which("dot") is None:
        pytest.skip("svg needs Graphviz's dot")
    out = run_pipeline("graph", "f.pipeline.yaml", "--format", fmt, "-o", str(FULL), cwd=work)
    assert out.returncode == 1
    assert out.stderr == (
        "error: writing (/dev/full) failed: No space left on device; the file system holding "
        "/dev/full is full; free space there and run again\n"
    )


def test_a_closed_pipe_is_quiet_and_exits_1_for_every_command():
    # `pipeline ... | head` once head has gone: nothing said, and Python's (and rich's) exit
    # code 1, whether the command prints a table (rich) or JSON (still buffered at its end)
    for args in (("list-units",), ("show-unit", "core.files", "--json")):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            out = _run(*args, stdout=write_end, buffered=True)
        finally:
            os.close(write_end)
        assert (args, out.returncode, out.stderr) == (args, 1, "")


# -- --set with an empty required value --------------------------------------------------------
def test_set_an_empty_required_param_is_refused_before_the_run(work: Path):
    out = run_pipeline("run", "f.pipeline.yaml", "--set", "sink.path=", cwd=work)
    assert out.returncode == 1
    assert out.stderr == (
        "error: --set sink.path: a value is required and this one is empty; see "
        "`pipeline show-unit core.jsonl-sink`\n"
    )
    listed = run_pipeline("runs", "f.pipeline.yaml", "--json", cwd=work)
    assert json.loads(listed.stdout)["runs"] == []  # refused before a run started


# -- status below 120 columns ----------------------------------------------------------------
def test_status_counters_at_80_columns_name_every_unit(work: Path):
    out = run_pipeline("status", "f.pipeline.yaml", cwd=work, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in out.stdout  # no column cut to a letter
    for unit in ("files", "pass", "sink"):
        assert f"  {unit}[0]  not started" in lines
    assert "    received -, processed -, errors -, retries -, rate/s -, backlog -, lag -," in lines


# -- runs --data-dir ---------------------------------------------------------------------------
def test_runs_has_no_data_dir_option_it_would_ignore(work: Path):
    # the runs are recorded on the file's transport: --data-dir (where `run` puts its local
    # run directories) was accepted and silently changed nothing
    out = run_pipeline("runs", "f.pipeline.yaml", "--data-dir", str(work / "elsewhere"), cwd=work)
    assert out.returncode == 2
    assert "Error: No such option '--data-dir'." in out.stderr


# -- tail ---------------------------------------------------------------------------------------
def test_tail_errors_of_an_unknown_unit_is_an_error(work: Path):
    out = run_pipeline("tail", "f.pipeline.yaml", "errors.sinc", cwd=work)
    assert out.returncode == 2
    assert out.stderr == (
        "error: pipeline files-to-jsonl has no unit 'sinc'; did you mean errors.sink? (its "
        "units: files, pass, sink; `errors` shows the error records of all of them)\n"
    )


def test_tail_refuses_a_width_too_small_to_show_anything(work: Path):
    out = run_pipeline("tail", "f.pipeline.yaml", "raw", "--width", "-5", cwd=work)
    assert out.returncode == 2
    assert "Invalid value for '--width': -5 is not in the range x>=20." in out.stderr


# -- schema -o a file that is not .json ----------------------------------------------------------
@pytest.mark.parametrize("where", ["/dev/full", "existing"])
def test_schema_output_that_is_not_a_directory_says_why(work: Path, where: str):
    (work / "existing").write_text("taken\n")
    out = run_pipeline("schema", "-o", where, cwd=work)
    assert out.returncode == 2
    assert out.stderr.endswith(
        f"error: --output {where} is not a directory, and an --output not ending in .json is "
        "taken as the directory to write pipeline.schema.json and units/ into; give a .json "
        "file name or a directory\n"
    )
    assert (work / "existing").read_text() == "taken\n"
