"""Bad input at the command line gets one clear sentence, a non-zero exit and no traceback:
real `pipeline` commands on a damaged store, broken YAML, a symlink loop, a directory given as
FILE, an override of a unit without parameters, conflicting options and lost run records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asapo_pipelines.transport.embedded import INLINE_MAX
from asapo_pipelines.worker.naming import data_source_for, runs_source

from helpers import core_pipeline, run_pipeline

NAME = "badinput"


def _one_sentence(done, *, lines: int = 1) -> str:
    """stderr of a failed command: `lines` lines, no traceback, no usage block."""
    assert done.returncode != 0, done.stdout + done.stderr
    err = done.stderr
    assert "Traceback" not in err, err
    assert "Usage:" not in err, err
    assert len(err.strip().splitlines()) == lines, err
    return err


def _problem_line(path: Path, cwd: Path, code: str) -> str:
    """The problem `code` `pipeline validate` reports for `path`, the line every command
    repeats (with FILE as given to it)."""
    done = run_pipeline("validate", "--quiet", str(path), cwd=cwd)
    (line,) = [x for x in done.stdout.splitlines() if f" error {code} " in x]
    return line.replace(str(path), path.name)


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """A finished run r1 of files -> copy -> sink: two payloads large enough for the store's
    segment file, and two held inline in its index."""
    home = tmp_path_factory.mktemp("ran")
    files = home / "files"
    files.mkdir()
    for i in range(2):
        (files / f"big-{i}.txt").write_text("x" * (INLINE_MAX * 2))
        (files / f"small-{i}.txt").write_text(f"small {i}")
    core_pipeline(home, files=files, out=home / "out.jsonl", name=NAME)
    done = run_pipeline("run", f"{NAME}.pipeline.yaml", cwd=home, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def _copy(ran: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(ran, home)
    return home


def test_tail_of_a_truncated_payload_file_says_the_stream_is_damaged(ran, tmp_path):
    home = _copy(ran, tmp_path)
    source = home / ".pipeline-data" / data_source_for("raw", NAME, "r1")
    segments = sorted(source.glob("payloads/**/*.seg"))
    assert segments, "the large payloads are in a segment file"
    for segment in segments:
        segment.write_bytes(segment.read_bytes()[:100])
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", "--all", "--json", cwd=home)
    # a folder copied with its store keeps its runs (no warning that they are another file's):
    # the damage is the one thing said
    err = _one_sentence(done, lines=1)
    assert "stream raw of run r1 is damaged" in err, err
    # the messages the store can still hand out are printed, and the damaged ones in place
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    whole = {r["metadata"]["name"] for r in printed if "damaged" not in r}
    damaged = {r["metadata"]["name"] for r in printed if "damaged" in r}
    sizes = {p.name: p.stat().st_size for p in (home / "files").iterdir()}
    assert whole == {n for n, size in sizes.items() if size <= INLINE_MAX}
    assert damaged == {n for n, size in sizes.items() if size > INLINE_MAX}


def test_tail_without_run_records_says_so(ran, tmp_path):
    home = _copy(ran, tmp_path)
    shutil.rmtree(home / ".pipeline-data" / runs_source(NAME))
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", cwd=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"pipeline {NAME} has no run recorded in its store (`pipeline runs` lists none), and "
        "stream raw holds no messages outside a run"
    )


def test_tail_refuses_all_with_last(ran):
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", "--all", "-n", "3", cwd=ran)
    assert done.returncode == 2
    err = _one_sentence(done)
    assert err.strip() == "error: give either --all or --last N (-n N), not both"


def test_set_on_a_unit_without_parameters_says_it_takes_none(ran, tmp_path):
    home = _copy(ran, tmp_path)
    done = run_pipeline("run", f"{NAME}.pipeline.yaml", "--set", "copy.x=1", cwd=home)
    err = _one_sentence(done)
    assert err.strip() == (
        "error: --set copy.x: unit core.identity has no parameter x; it takes no parameters"
    )
    assert done.returncode == 2  # a name given wrong, as an unknown unit, stream or run


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("logs", "[FILE] UNIT, UNIT being the unit whose log to print"),
        ("tail", "[FILE] STREAM, STREAM being the stream whose messages to print"),
        ("prune", "PATH_OR_PIPELINE --older-than AGE"),
    ],
)
def test_logs_tail_and_prune_without_arguments_say_their_usage(tmp_path, command, usage):
    """`logs` and `tail` without arguments gave click's `Usage: ... Error: Missing argument
    'ARGS...'` block (`'[FILE] STREAM'`), where `prune` says its usage in one sentence: the
    three now say theirs alike, exit code 2, in a folder with its one pipeline file too."""
    core_pipeline(tmp_path, files=tmp_path / "in", out=tmp_path / "out.jsonl", name=NAME)
    done = run_pipeline(command, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    err = _one_sentence(done)
    assert err.startswith(f"error: usage: pipeline {command} {usage}"), err
    assert "Missing argument" not in err
    assert done.stdout == ""


def test_set_of_a_unit_the_file_has_not_is_a_usage_error(ran, tmp_path):
    """`run --set copi.x=1` exited 1 where every other name given wrong (a stream, a run, a
    unit of `logs`) exits 2: the same sentence, with its did-you-mean, now exits 2; a value the
    unit refuses stays 1, as `validate` says one in the file."""
    home = _copy(ran, tmp_path)
    done = run_pipeline("run", f"{NAME}.pipeline.yaml", "--set", "copi.x=1", cwd=home)
    assert _one_sentence(done).strip() == (
        f"error: --set copi.x: pipeline {NAME} has no unit copi; did you mean copy?"
    )
    assert done.returncode == 2
    refused = run_pipeline(
        "run", f"{NAME}.pipeline.yaml", "--set", "files.settle_seconds=abc", cwd=home
    )
    assert "--set files.settle_seconds" in _one_sentence(refused)
    assert refused.returncode == 1


BROKEN = {
    "P002": "pipeline: broken\nunits:\n  a: [1\n",  # a YAML syntax error
    "P003": "pipeline: broken\nunits: {}\npipeline: again\n",  # a duplicate key
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize("command", [["streams"], ["prune", "--older-than", "1d"]])
def test_streams_and_prune_report_broken_yaml_at_its_line(tmp_path, kind, command):
    path = tmp_path / "broken.pipeline.yaml"
    path.write_text(BROKEN[kind])
    done = run_pipeline(command[0], path.name, *command[1:], cwd=tmp_path)
    err = _one_sentence(done, lines=2)
    assert _problem_line(path, tmp_path, kind) in err, err
    assert "yaml.dev" not in err, err  # ruamel's own report
    assert "^" not in err, err


FILE_COMMANDS = [
    ["run"],
    ["plan"],
    ["status"],
    ["runs"],
    ["reprocess", "--from", "r1"],
    ["stop"],
    ["tail", "raw"],
    ["logs", "copy"],
]


@pytest.mark.parametrize("what", ["symlink loop", "directory"])
@pytest.mark.parametrize("command", FILE_COMMANDS, ids=lambda c: c[0])
def test_an_unreadable_file_gets_the_problem_validate_reports(tmp_path, what, command):
    if what == "directory":
        (tmp_path / "dir.yaml").mkdir()
        name = "dir.yaml"
    else:
        (tmp_path / "loop1.yaml").symlink_to("loop2.yaml")
        (tmp_path / "loop2.yaml").symlink_to("loop1.yaml")
        name = "loop1.yaml"
    expected = _problem_line(tmp_path / name, tmp_path, "P001")
    done = run_pipeline(command[0], name, *command[1:], cwd=tmp_path)
    err = _one_sentence(done, lines=2)
    assert expected in err, err
    assert "no such file" not in err, err
