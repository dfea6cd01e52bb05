"""A reprocess that meets a damaged source payload while it copies the old run's messages is
refused in one sentence, and the run it had recorded ends `failed` with that sentence: left
`running`, `pipeline stop` found nothing to stop, `prune --run` refused it as running, and age
retention kept its streams for ever."""

from __future__ import annotations

import json
from pathlib import Path

from faults_support import core_pipeline, pipeline, sink_names

from asapo_pipelines.transport.embedded import INLINE_MAX
from asapo_pipelines.worker.naming import data_source_for


def runs(file: Path, cwd: Path) -> dict[str, dict]:
    shown = pipeline("runs", str(file), "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return {run["id"]: run for run in json.loads(shown.stdout)["runs"]}


def test_a_reprocess_refused_by_a_damaged_source_payload_ends_its_run_failed(tmp_path: Path):
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    files.mkdir()
    for i in range(3):  # big enough to live in segment files, not in the index
        (files / f"f{i}.txt").write_text(f"file {i} " + "x" * (INLINE_MAX * 4) + "\n")
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(sink_names(out)) == 3

    source = tmp_path / "store" / data_source_for("raw", "faults", "r1")
    (segment,) = sorted((source / "payloads").rglob("*.seg"))[:1]
    segment.write_bytes(segment.read_bytes()[:INLINE_MAX])  # cut short, as by a bad disk

    refused = pipeline("reprocess", str(file), "--from", "r1", cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout
    err = refused.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "its payload file holds" in err, err

    recorded = runs(file, tmp_path)
    assert recorded["r1"]["state"] == "complete"
    assert recorded["r2"]["state"] == "failed", recorded["r2"]
    assert recorded["r2"]["message"] == "replay of r1: " + err.removeprefix("error: ")
    table = pipeline("runs", str(file), cwd=tmp_path)
    assert "r2 failed: replay of r1: message 1 of stream" in table.stdout, table.stdout

    # r2 began last, so tail reads it: it holds nothing, and tail says so rather than print
    # nothing, which read as "the pipeline made nothing"
    tailed = pipeline("tail", str(file), "copied", cwd=tmp_path)
    assert tailed.returncode == 0, tailed.stderr
    assert tailed.stdout == ""
    # one line that names the run and the way to the one that holds the messages
    assert tailed.stderr == (
        "run r2 (failed) holds no messages in stream copied; it is a reprocess of r1, "
        "--run r1 shows r1's\n"
    ), tailed.stderr
    assert (
        pipeline("tail", str(file), "copied", "--run", "r1", cwd=tmp_path).stdout.count("\n") == 3
    )

    # an ended run: pruned on request, and nothing of it is kept as "running"
    pruned = pipeline("prune", str(file), "--run", "r2", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "r2" not in runs(file, tmp_path)
