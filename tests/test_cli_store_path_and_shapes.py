"""Real `pipeline` commands on two kinds of bad pipeline file an outside tester found:

- an embedded transport whose `path` names a regular file (or lies under one): every command
  that opens the store says the same sentence, that the path is not a directory but a file,
  instead of `streams` and `prune` saying the store "does not exist yet (nothing has run)";
- a file that is empty, holds only a comment, or whose top level is a list or a string:
  `streams` and `prune` report `pipeline validate`'s P108 problem at its place, as every other
  command does, instead of a sentence of their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import core_pipeline, run_pipeline

NAME = "filestore"

STORE_COMMANDS = [
    ["run"],
    ["status"],
    ["runs"],
    ["tail", "raw"],
    ["tail", "errors"],
    ["streams"],
    ["prune", "--older-than", "1d"],
    ["prune", "--run", "r1"],
]


def _error_line(done) -> str:
    """The one line a failed command printed: no traceback, no usage block."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("below", [False, True], ids=["the file", "under the file"])
def test_a_store_path_naming_a_file_gets_one_sentence_from_every_command(tmp_path, below):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a")
    in_the_way = tmp_path / "store.txt"
    in_the_way.write_text("not a store\n")
    store = "store.txt/sub" if below else "store.txt"
    path = core_pipeline(tmp_path, files=files, out=tmp_path / "out.jsonl", store=store, name=NAME)
    sentences = {}
    for command in STORE_COMMANDS:
        done = run_pipeline(command[0], path.name, *command[1:], cwd=tmp_path)
        sentences[" ".join(command)] = _error_line(done).removeprefix("error: ")
    for command, sentence in sentences.items():
        assert "does not exist yet" not in sentence, f"{command}: {sentence}"
    # `pipeline run` names the store it could not make; every other command says the same
    said = sentences["run"]
    assert f"{in_the_way} is not a directory but a file" in said, said
    assert "embedded transport's `path`" in said, said
    for command, sentence in sentences.items():
        # `status` puts its own clause first: the counters it could not read
        assert sentence.endswith(said), f"{command}: {sentence}"
    assert in_the_way.read_text() == "not a store\n"


NOT_MAPPINGS = {
    "empty": "",
    "a comment only": "# nothing here yet\n",
    "a list": "- pipeline: demo\n- units: {}\n",
    "a string": "just some words\n",
}


def _p108_line(path: Path, cwd: Path) -> str:
    """The problem `pipeline validate` reports for `path`, the line every command repeats."""
    done = run_pipeline("validate", "--quiet", path.name, cwd=cwd)
    (line,) = [x for x in done.stdout.splitlines() if " error P108 " in x]
    return line


@pytest.mark.parametrize("kind", sorted(NOT_MAPPINGS))
@pytest.mark.parametrize(
    "command", [["streams"], ["prune", "--older-than", "1d"], ["prune", "--run", "r1"]]
)
def test_streams_and_prune_report_a_file_that_is_no_mapping_as_validate_does(
    tmp_path, kind, command
):
    path = tmp_path / "shape.pipeline.yaml"
    path.write_text(NOT_MAPPINGS[kind])
    expected = _p108_line(path, tmp_path)
    done = run_pipeline(command[0], path.name, *command[1:], cwd=tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # the same two lines `pipeline run` and `pipeline tail` print for such a file
    reference = run_pipeline("run", path.name, cwd=tmp_path)
    assert done.stderr == reference.stderr, done.stderr
    assert expected in done.stderr, done.stderr


def test_a_store_that_lost_its_marker_is_not_called_a_store_no_run_made(tmp_path):
    """`store.json` removed from a store that holds a run: `streams` and `prune` said the store
    "does not exist yet (nothing has run)" while `runs` and `tail` read the run in it. They
    now say what is missing and that `pipeline run` writes it again, which keeps the run."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a")
    path = core_pipeline(tmp_path, files=files, out=tmp_path / "out.jsonl", name=NAME)
    assert run_pipeline("run", path.name, cwd=tmp_path).returncode == 0
    store = tmp_path / ".pipeline-data"
    (store / "store.json").unlink()
    for command in (["streams"], ["prune", "--older-than", "1s"]):
        said = _error_line(run_pipeline(command[0], path.name, *command[1:], cwd=tmp_path))
        assert "does not exist yet" not in said, said
        assert f"{store} has lost store.json" in said, said
        assert f"`pipeline run {path.name}` writes it again" in said, said
    # what the sentence promises: the next run writes the marker and the first run is kept
    assert run_pipeline("run", "--fresh", path.name, cwd=tmp_path).returncode == 0
    assert (store / "store.json").is_file()
    listed = run_pipeline("streams", path.name, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"{NAME}.r1.raw" in listed.stdout
    assert f"{NAME}.r2.raw" in listed.stdout
