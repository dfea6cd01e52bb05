"""Two pipelines with the same stream names beside each other (one store, one directory): each
processes exactly its own inputs, one after the other and at the same time; two files with the
same pipeline name in one store are refused. Real `pipeline run`, real workers, core units."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from runs_helpers import one_sentence, store_contents

from helpers import CACHE_DIR, PIPELINE, run_pipeline

UNITS = """
units:
  files:
    unit: core.files
    params: {{directory: {inputs}/, pattern: "*.txt"}}
    outputs: {{files: raw}}
  pass:
    unit: core.identity
    inputs: {{input: raw}}
    outputs: {{output: checked}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/{name}.jsonl, payload: text}}
    inputs: {{messages: checked}}
"""


def make(directory: Path, name: str, inputs: str, count: int, file: str | None = None) -> Path:
    folder = directory / inputs
    folder.mkdir(exist_ok=True)
    for i in range(count):
        (folder / f"{inputs}-{i}.txt").write_text(f"{inputs} {i}\n")
    path = directory / (file or f"{name}.pipeline.yaml")
    path.write_text(f"pipeline: {name}\n" + UNITS.format(inputs=inputs, name=name))
    return path


def lines(directory: Path, name: str) -> list[dict]:
    path = directory / "results" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_own(directory: Path, name: str, inputs: str, count: int, run: str) -> None:
    got = lines(directory, name)
    assert len(got) == count
    assert sorted(r["payload"] for r in got) == sorted(f"{inputs} {i}\n" for i in range(count))
    assert {r["data_source"] for r in got} == {f"{name}.{run}.checked"}
    assert {r["metadata"]["provenance"]["run"] for r in got} == {run}


def test_two_pipelines_one_after_the_other_each_process_their_own(tmp_path):
    alpha = make(tmp_path, "alpha", "in-a", 3)
    beta = make(tmp_path, "beta", "in-b", 2)
    for path in (alpha, beta):
        done = run_pipeline("run", path.name, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    check_own(tmp_path, "alpha", "in-a", 3, "r1")
    check_own(tmp_path, "beta", "in-b", 2, "r1")
    held = store_contents(tmp_path / ".pipeline-data")
    assert held[("alpha.r1.raw", "default")] == 3
    assert held[("beta.r1.raw", "default")] == 2
    # the counts each run recorded: every unit processed its own pipeline's messages only
    for name, count in (("alpha", 3), ("beta", 2)):
        listed = run_pipeline("runs", f"{name}.pipeline.yaml", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        (run,) = json.loads(listed.stdout)["runs"]
        assert {u: c["processed"] for u, c in run["counts"].items()} == {
            "files": count,
            "pass": count,
            "sink": count,
        }


def test_two_pipelines_at_the_same_time_each_process_their_own(tmp_path):
    alpha = make(tmp_path, "alpha", "in-a", 4)
    beta = make(tmp_path, "beta", "in-b", 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, COLUMNS="200")
    procs = [
        subprocess.Popen(
            [PIPELINE, "run", path.name],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (alpha, beta)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    check_own(tmp_path, "alpha", "in-a", 4, "r1")
    check_own(tmp_path, "beta", "in-b", 3, "r1")


def test_a_second_file_with_the_same_pipeline_name_is_refused(tmp_path):
    first = make(tmp_path, "alpha", "in-a", 1)
    done = run_pipeline("run", first.name, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    before = store_contents(tmp_path / ".pipeline-data")
    second = make(tmp_path, "alpha", "in-c", 2, file="copy.pipeline.yaml")
    refused = run_pipeline("run", second.name, cwd=tmp_path, timeout=120)
    assert refused.returncode == 1
    line = one_sentence(refused.stderr)
    assert str(first.resolve()) in line
    assert str(second.resolve()) in line
    assert store_contents(tmp_path / ".pipeline-data") == before
    assert len(lines(tmp_path, "alpha")) == 1


def test_a_detached_run_is_recorded_with_its_end(tmp_path):
    make(tmp_path, "alpha", "in-a", 2)
    started = run_pipeline("run", "--detach", "alpha.pipeline.yaml", cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "run r1 of pipeline alpha starts" in started.stdout
    deadline = time.monotonic() + 180
    state: dict = {}
    while time.monotonic() < deadline:
        listed = run_pipeline("runs", "alpha.pipeline.yaml", "--json", cwd=tmp_path)
        state = json.loads(listed.stdout)["runs"][0]
        if state["state"] != "running":
            break
        time.sleep(0.5)
    assert state["state"] == "complete", state
    assert state["counts"]["sink"]["processed"] == 2
    check_own(tmp_path, "alpha", "in-a", 2, "r1")


def test_runs_counts_what_every_session_of_a_run_processed(tmp_path):
    """A re-run of an unchanged file resumes r1 and has nothing left to do: `pipeline runs` must
    still say r1 processed its 2 messages, not the last session's 0."""
    make(tmp_path, "alpha", "in-a", 2)
    for _ in range(2):
        done = run_pipeline("run", "alpha.pipeline.yaml", cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = run_pipeline("runs", "alpha.pipeline.yaml", "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)["runs"]
    assert run["sessions"] == 2
    assert run["counts"]["sink"]["processed"] == 2
    table = run_pipeline("runs", "alpha.pipeline.yaml", cwd=tmp_path)
    # each unit's count, in the file's order: one sum over the units read the 2 files that
    # went through its three units as "6 processed"
    assert "│ processed: files 2, pass 2, sink 2; 0 errors │" in table.stdout, table.stdout
    assert "6 processed" not in table.stdout, table.stdout
    check_own(tmp_path, "alpha", "in-a", 2, "r1")


def _worker(path: Path, instance: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    return subprocess.Popen(
        [PIPELINE, "worker", path.name, instance, "--status-interval", "0.2"],
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_resumed_consumer_waits_for_its_upstream_not_for_the_old_end(tmp_path):
    """In a resumed session the consumers' input streams still carry the end the session before
    gave them: finished and drained. A sink that trusted that would end after its linger, before
    the resumed source has sent the file added since, and the file would wait for the next
    resume. Here the consumers start well before the source: they must wait for it."""
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    path = make(tmp_path, "alpha", "in-a", 2)
    done = run_pipeline("run", path.name, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "in-a" / "in-a-2.txt").write_text("in-a 2\n")
    catalog = Catalog.load()
    pipeline = load_pipeline(path, catalog)
    with open_transport(pipeline.transport.spec(), catalog) as transport:
        store = RunStore(transport, "alpha")
        latest = store.latest()
        assert latest is not None
        store.resume(latest)  # what `pipeline run` records before it starts the workers

    consumers = [_worker(path, "sink"), _worker(path, "pass")]
    try:
        time.sleep(4)  # eight times the consumers' linger
        assert [c.poll() for c in consumers] == [None, None], [c.stdout.read() for c in consumers]
        source = _worker(path, "files")
        for proc in (source, *consumers):
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
    finally:
        for c in consumers:
            if c.poll() is None:
                c.kill()
    got = lines(tmp_path, "alpha")
    assert sorted(r["payload"] for r in got) == [f"in-a {i}\n" for i in range(3)]
    assert {r["metadata"]["provenance"]["run"] for r in got} == {"r1"}


def test_resume_applies_a_changed_configuration_to_what_was_not_processed(tmp_path):
    path = make(tmp_path, "alpha", "in-a", 2)
    done = run_pipeline("run", path.name, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    path.write_text(path.read_text().replace("payload: text", "payload: base64"))
    (tmp_path / "in-a" / "in-a-2.txt").write_text("in-a 2\n")
    refused = run_pipeline("run", path.name, cwd=tmp_path, timeout=120)
    assert refused.returncode == 1
    assert 'sink (payload "text" -> "base64")' in one_sentence(refused.stderr)
    resumed = run_pipeline("run", path.name, "--resume", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run r1 under a changed configuration: sink" in resumed.stdout
    got = lines(tmp_path, "alpha")
    # the two files processed before stay as they were; only the new one is processed, under
    # the new configuration (base64), and nothing twice
    assert [("payload" in r and r["payload"].endswith("\n")) for r in got] == [True, True, False]
    assert len(got) == 3
    listed = run_pipeline("runs", path.name, "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)["runs"]
    assert run["sessions"] == 2
    assert run["configurations"]["sink"]["params"]["payload"] == "base64"


def test_runs_and_reprocess_of_a_compiled_job_ask_for_the_pipeline_file(tmp_path):
    """A compiled job names no transport settings and no params: `runs` and `reprocess` say
    they need the pipeline file, in one sentence, instead of failing inside."""
    job = tmp_path / "alpha.json"
    job.write_text(json.dumps({"Job": {"ID": "alpha", "TaskGroups": []}}))
    for args in (("runs", job.name), ("reprocess", job.name, "--from", "r1")):
        refused = run_pipeline(*args, cwd=tmp_path, timeout=60)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        line = one_sentence(refused.stderr)
        assert "needs the pipeline file" in line
        assert str(job.resolve()) in line
    assert not (tmp_path / ".pipeline-data").exists()
