"""`pipeline tail` as an exploratory user found it (session 58):

- `tail FILE STREAM -n 0` said `run r1 (complete) holds no messages in stream files` of a
  stream holding 2, and `-n 0 --follow` (the "only new ones" use) said the same first;
- `tail --follow` of a run that had ended waited for ever, where `logs --follow` ends;
- `tail errors` and `streams` without FILE failed with click's `Missing argument`, where
  `logs`, `status` and `runs` use the one pipeline file of the folder;
- an unknown `--run` exited 1, an unknown stream or unit 2 (a usage error).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import PIPELINE, core_pipeline, files_to_sink, run_pipeline, wait_for

NAME = "tailfollow"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch run of two files, ended: its stream `files` holds 2 messages."""
    work = tmp_path_factory.mktemp("tail-follow")
    file = files_to_sink(work, NAME)
    done = run_pipeline("run", file.name, cwd=work, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return work


def test_last_0_prints_nothing_and_says_the_stream_is_not_empty(ran: Path) -> None:
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "files", "-n", "0", cwd=ran)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert "holds no messages" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        "stream files of run r1 holds 2 messages, none printed with -n 0 (-n N or --all prints "
        "them)"
    ), done.stderr


def test_last_0_follow_of_an_ended_run_says_what_it_left_out_and_ends(ran: Path) -> None:
    done = run_pipeline(
        "tail", f"{NAME}.pipeline.yaml", "files", "-n", "0", "--follow", cwd=ran, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert done.stderr.splitlines() == [
        "following stream files of run r1; 2 earlier messages not shown (-n 0)",
        "run r1 has ended (complete); stopped following",
    ], done.stderr


def test_follow_of_an_ended_run_prints_its_messages_and_ends(ran: Path) -> None:
    done = run_pipeline(
        "tail", f"{NAME}.pipeline.yaml", "files", "--follow", "--json", cwd=ran, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [1, 2]
    assert done.stderr.strip() == "run r1 has ended (complete); stopped following"


def test_tail_and_streams_without_file_use_the_one_file_here(ran: Path) -> None:
    for args in (["tail", "files", "--json"], ["tail", "errors"], ["streams", "--json"]):
        alone = run_pipeline(*args, cwd=ran)
        given = run_pipeline(args[0], f"{NAME}.pipeline.yaml", *args[1:], cwd=ran)
        assert alone.returncode == 0, alone.stderr
        assert (alone.stdout, alone.stderr) == (given.stdout, given.stderr), args
    streams = json.loads(run_pipeline("streams", "--json", cwd=ran).stdout)
    assert streams["pipeline"] == NAME


def test_tail_of_a_file_alone_asks_for_the_stream(ran: Path) -> None:
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", cwd=ran)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: name the stream whose messages to print: pipeline tail {NAME}.pipeline.yaml STREAM"
    )


def test_tail_and_streams_without_file_in_a_folder_of_none(tmp_path: Path) -> None:
    for args, what in ((["tail", "errors"], "the pipeline file"), (["streams"], "a store")):
        done = run_pipeline(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: give {what}"), done.stderr
        assert "there is no *.pipeline.yaml here" in done.stderr, done.stderr


def test_an_unknown_run_is_a_usage_error(ran: Path) -> None:
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "files", "--run", "r9", cwd=ran)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.strip() == (
        f"error: pipeline {NAME} has no run 'r9' in this store (its runs: r1; see `pipeline runs`)"
    )


def test_follow_of_a_watching_run_prints_new_messages_and_ends_with_the_stop(
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.txt").write_text("first\n")
    file = core_pipeline(tmp_path, files=incoming, out=tmp_path / "out.jsonl", watch=True)
    out = tmp_path / "out.jsonl"
    started = run_pipeline("run", file.name, "--detach", cwd=tmp_path, timeout=300)
    assert started.returncode == 0, started.stderr
    follow = None
    try:
        wait_for(lambda: "a.txt" in _text(out), timeout=120, what="the first file's output")
        follow = subprocess.Popen(
            [PIPELINE, "tail", "raw", "-n", "0", "--follow", "--json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None
        assert follow.stderr is not None
        # the first read is done: what comes now is new
        said = follow.stderr.readline()
        assert said == "following stream raw of run r1; 1 earlier message not shown (-n 0)\n"
        (incoming / "b.txt").write_text("second\n")
        line = follow.stdout.readline()  # the new file's message, the first not left out
        assert json.loads(line)["metadata"]["name"] == "b.txt", line
        assert follow.poll() is None, "the follow ended while the run went on"
    finally:
        stopped = run_pipeline("stop", file.name, cwd=tmp_path, timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert follow is not None
    rest, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert rest == ""
    assert err.strip() == "run r1 has ended (stopped); stopped following", err


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
