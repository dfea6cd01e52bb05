"""`pipeline prune` under a running pipeline, and its scope. Dropped under running workers, a
stream is re-created with ids from 1 again, and the sink takes every new message for one it
already wrote (its key holds the source stream and id): the new messages were lost without a
word. Prune keeps what a running run uses, refuses to drop it by name, touches only the
file's own pipeline, and a sink that skips a message it already wrote says so. Real `pipeline`
commands, a detached watch-mode run, the embedded store."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runs_helpers import one_sentence, store_contents

from helpers import run_pipeline, wait_for

FILE = "r2.pipeline.yaml"
#: the pipeline of the bug report, word for word
WATCHED = """\
pipeline: r2
units:
  files: {unit: core.files, params: {directory: in/, pattern: "*.txt", watch: true, settle_seconds: 0.2}, outputs: {files: raw}}
  pass:  {unit: core.identity, replicas: 2, inputs: {input: raw}, outputs: {output: checked}}
  sink:  {unit: core.jsonl-sink, params: {path: results/out.jsonl, payload: text}, inputs: {messages: checked}}
"""  # noqa: E501


def lines(directory: Path, name: str = "out") -> int:
    path = directory / "results" / f"{name}.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def drop_files(directory: Path, prefix: str, count: int) -> None:
    for i in range(1, count + 1):
        (directory / "in" / f"{prefix}{i}.txt").write_text(f"{prefix}{i}\n")


def acknowledged(transport: Any, source: str) -> bool:
    """Every message of the source's default stream acknowledged by every group reading it."""
    infos = {i.name: i for i in transport.describe().get(source, [])}
    info = infos.get("default")
    return bool(info and info.group_lag) and not any(info.group_lag.values())


def run_data(store: Path) -> dict[tuple[str, str], int]:
    """The run's own streams (the workers' status streams grow while it runs)."""
    return {k: v for k, v in store_contents(store).items() if k[0].startswith("r2.r1.")}


@contextlib.contextmanager
def watching(directory: Path) -> Iterator[Path]:
    """The bug report's pipeline running detached in `directory`; stopped at the end."""
    (directory / "in").mkdir()
    (directory / FILE).write_text(WATCHED)
    started = run_pipeline("run", FILE, "--detach", cwd=directory, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield directory
    finally:
        stopped = run_pipeline("stop", FILE, cwd=directory, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_prune_older_than_keeps_the_streams_of_a_running_run(tmp_path):
    with watching(tmp_path):
        drop_files(tmp_path, "a", 30)
        wait_for(lambda: lines(tmp_path) == 30, 60, "the first 30 lines")
        time.sleep(5)  # every stream idle for longer than the age given below
        pruned = [
            run_pipeline("prune", target, "--older-than", "4s", cwd=tmp_path)
            for target in (FILE, ".pipeline-data")
        ]
        drop_files(tmp_path, "b", 10)
        deadline = time.monotonic() + 60
        while lines(tmp_path) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # nothing more than 40 arrives either
        assert lines(tmp_path) == 40
    for out in pruned:
        assert out.returncode == 0, out.stderr
        assert "r2.r1." not in out.stdout.splitlines()[0], out.stdout
        assert "of run r1 of pipeline r2, which is running; stop it first" in out.stdout


def test_prune_refuses_to_drop_a_running_runs_data_by_name(tmp_path):
    with watching(tmp_path):
        drop_files(tmp_path, "a", 3)
        wait_for(lambda: lines(tmp_path) == 3, 60, "the first 3 lines")
        store = tmp_path / ".pipeline-data"
        before = run_data(store)
        for args in (
            ("--run", "r1"),
            ("--source", "r2.r1.raw", "--drop-stream", "default"),
            ("--source", "r2.r1.checked", "--older-than", "0s"),
        ):
            for target in (FILE, str(store)):
                if args[0] == "--run" and target != FILE:
                    continue
                refused = run_pipeline("prune", target, *args, cwd=tmp_path)
                assert refused.returncode != 0, (args, refused.stdout)
                line = one_sentence(refused.stderr)
                assert "run r1 of pipeline r2" in line, line
                assert "is running" in line, line
                assert "pipeline stop" in line, line
        # nor its record alone: the run would go on with no record, its streams never pruned
        for target in (FILE, str(store)):
            refused = run_pipeline(
                "prune", target, "--source", "r2.runs", "--drop-stream", "r1", cwd=tmp_path
            )
            assert refused.returncode != 0, refused.stdout
            line = one_sentence(refused.stderr)
            assert "r2.runs holds run records" in line, line
            assert "pipeline prune FILE --run RUN" in line, line
        assert ("r2.runs", "r1") in store_contents(store)
        assert run_data(store) == before
        drop_files(tmp_path, "b", 2)
        wait_for(lambda: lines(tmp_path) == 5, 60, "the 2 new lines")


OTHER = """\
pipeline: {name}
transport: {{embedded: {{path: shared-store}}}}
units:
  files: {{unit: core.files, params: {{directory: {name}-in/}}, outputs: {{files: raw}}}}
  sink:  {{unit: core.jsonl-sink, params: {{path: results/{name}.jsonl}}, inputs: {{messages: raw}}}}
"""  # noqa: E501


def test_prune_with_a_pipeline_file_touches_only_that_pipelines_data(tmp_path):
    for name in ("alpha", "beta"):
        (tmp_path / f"{name}-in").mkdir()
        (tmp_path / f"{name}-in" / "one.txt").write_text(f"{name}\n")
        (tmp_path / f"{name}.pipeline.yaml").write_text(OTHER.format(name=name))
        done = run_pipeline("run", f"{name}.pipeline.yaml", cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    store = tmp_path / "shared-store"
    beta_before = {k: v for k, v in store_contents(store).items() if k[0].startswith("beta.")}
    assert ("beta.r1.raw", "default") in beta_before
    pruned = run_pipeline(
        "prune", "alpha.pipeline.yaml", "--older-than", "0s", "--json", cwd=tmp_path
    )
    assert pruned.returncode == 0, pruned.stderr
    dropped = json.loads(pruned.stdout)["dropped_streams"]
    assert ["alpha.r1.raw", "default"] in dropped
    assert not [s for s, _ in dropped if not s.startswith("alpha.")], dropped
    after = store_contents(store)
    assert {k: v for k, v in after.items() if k[0].startswith("beta.")} == beta_before
    refused = run_pipeline(
        "prune",
        "alpha.pipeline.yaml",
        "--source",
        "beta.r1.raw",
        "--older-than",
        "0s",
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    assert "beta.r1.raw is not a data source of pipeline alpha" in one_sentence(refused.stderr)
    assert store_contents(store) == after


def test_a_sink_says_when_it_skips_a_message_it_already_wrote(tmp_path):
    """Defense in depth: a stream re-created under a running pipeline (dropped from Python
    here, as any tool could) gives ids from 1 again, which the sink takes for messages it
    already wrote. It must not write them again, and must not be silent about it either."""
    from asapo_pipelines.transport import open_transport

    with watching(tmp_path):
        drop_files(tmp_path, "a", 4)
        wait_for(lambda: lines(tmp_path) == 4, 60, "the first 4 lines")
        spec = {"embedded": {"path": str(tmp_path / ".pipeline-data"), "create": False}}
        with open_transport(spec) as transport:
            # the lines are durable before the sink acknowledges them: a drop in between would
            # make that acknowledgement fail and restart the sink, which is not this test's case
            wait_for(lambda: acknowledged(transport, "r2.r1.checked"), 60, "the sink's acks")
            for source in ("r2.r1.raw", "r2.r1.checked"):
                transport.drop_stream(source, "default")  # type: ignore[attr-defined]
        drop_files(tmp_path, "b", 3)

        def skipped() -> bool:  # the three files found, passed on and taken for duplicates
            return "duplicates_skipped 3" in run_pipeline("status", FILE, cwd=tmp_path).stdout

        wait_for(skipped, 90, "the sink's summary to count 3 skips")
    assert lines(tmp_path) == 4  # what this test forces: the skip itself, now visible
    status = run_pipeline("status", FILE, cwd=tmp_path)
    assert "duplicates_skipped 3" in status.stdout, status.stdout
    log = run_pipeline("logs", FILE, "sink", "--stderr", cwd=tmp_path).stdout
    skips = [line for line in log.splitlines() if "skipped message r2.r1.checked/default/" in line]
    assert len(skips) == 1, log  # once per stream, not once per message
    assert " INFO " in skips[0]
    assert "duplicates_skipped" in skips[0]


SOURCE = """\
pipeline: src
units:
  files: {unit: core.files, params: {directory: in/}, outputs: {files: raw}}
  sink:  {unit: core.jsonl-sink, params: {path: results/src.jsonl}, inputs: {messages: raw}}
"""
#: the bug report's reader: another pipeline reading src's stream as an external one
READER = """\
pipeline: ext
streams: {src.r1.raw: {external: true}}
units:
  sink: {unit: core.jsonl-sink, params: {path: results/ext.jsonl}, inputs: {messages: src.r1.raw}}
"""


def test_prune_keeps_what_another_running_pipeline_reads_as_external(tmp_path):
    """src ran to its end; ext, running, reads src's stream. Whatever the selection (src's file,
    --run, --source, the store directory), prune keeps that stream and names the reader."""
    (tmp_path / "in").mkdir()
    drop_files(tmp_path, "a", 3)
    (tmp_path / "src.pipeline.yaml").write_text(SOURCE)
    (tmp_path / "ext.pipeline.yaml").write_text(READER)
    done = run_pipeline("run", "src.pipeline.yaml", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    store = tmp_path / ".pipeline-data"
    started = run_pipeline("run", "ext.pipeline.yaml", "--detach", cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        wait_for(lambda: lines(tmp_path, "ext") == 3, 60, "ext's 3 lines")
        time.sleep(1.5)  # src's streams idle for longer than the age given below
        before = {k: v for k, v in store_contents(store).items() if k[0] == "src.r1.raw"}
        assert before == {("src.r1.raw", "default"): 3}
        for args in (
            ("--run", "r1"),
            ("--source", "src.r1.raw", "--drop-stream", "default"),
            ("--source", "src.r1.raw", "--older-than", "1s"),
        ):
            refused = run_pipeline("prune", "src.pipeline.yaml", *args, cwd=tmp_path)
            assert refused.returncode != 0, (args, refused.stdout)
            line = one_sentence(refused.stderr)
            assert "src.r1.raw" in line, line
            assert "is read by run r1 of pipeline ext, which is running" in line, line
            assert "pipeline stop" in line, line
            assert "ext.pipeline.yaml" in line, line
        for target in ("src.pipeline.yaml", str(store)):
            pruned = run_pipeline("prune", target, "--older-than", "1s", cwd=tmp_path)
            assert pruned.returncode == 0, pruned.stderr
            assert "src.r1.raw/" not in pruned.stdout.splitlines()[0], pruned.stdout
            assert "of src.r1.raw, read by run r1 of pipeline ext, which is running" in (
                pruned.stdout
            )
        assert {k: v for k, v in store_contents(store).items() if k[0] == "src.r1.raw"} == before
        assert ("src.runs", "r1") in store_contents(store)
    finally:
        stopped = run_pipeline("stop", "ext.pipeline.yaml", cwd=tmp_path, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # once the reader stopped, the run goes as before
    pruned = run_pipeline("prune", "src.pipeline.yaml", "--run", "r1", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert not [k for k in store_contents(store) if k[0].startswith("src.r1.")]


#: ext as first run: its own watched folder, no external stream; then edited to read src's
OWN_FOLDER = """\
pipeline: ext
units:
  files: {unit: core.files, params: {directory: in2/, watch: true}, outputs: {files: mine}}
  sink:  {unit: core.jsonl-sink, params: {path: results/ext.jsonl}, inputs: {messages: mine}}
"""


def test_prune_reads_the_externals_of_a_resumed_run_from_its_edited_file(tmp_path):
    """ext's run r1 began without external streams; resumed under an edited file that reads
    src's stream, it must protect that stream: what a running run reads is what its current
    session's file says, not the first session's."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in2").mkdir()
    drop_files(tmp_path, "a", 3)
    (tmp_path / "src.pipeline.yaml").write_text(SOURCE)
    ext = tmp_path / "ext.pipeline.yaml"
    ext.write_text(OWN_FOLDER)
    done = run_pipeline("run", "src.pipeline.yaml", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    first = run_pipeline("run", "ext.pipeline.yaml", "--detach", cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    stopped = run_pipeline("stop", "ext.pipeline.yaml", cwd=tmp_path, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    ext.write_text(READER)
    resumed = run_pipeline(
        "run", "ext.pipeline.yaml", "--resume", "--detach", cwd=tmp_path, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    store = tmp_path / ".pipeline-data"
    try:
        wait_for(lambda: lines(tmp_path, "ext") == 3, 60, "ext's 3 lines")
        time.sleep(1.5)  # src's streams idle for longer than the age given below
        pruned = run_pipeline("prune", "src.pipeline.yaml", "--older-than", "1s", cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        assert "of src.r1.raw, read by run r1 of pipeline ext, which is running" in (pruned.stdout)
        assert store_contents(store).get(("src.r1.raw", "default")) == 3
    finally:
        stopped = run_pipeline("stop", "ext.pipeline.yaml", cwd=tmp_path, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
