"""A `pipeline deploy` that fails before anything is submitted leaves the run it resumed as it
was: a complete run stays complete with its counts, however often the deploy fails; a run the
deploy began itself (`--fresh`) ends `failed`, counting nothing. Real `pipeline` processes against a
refused connection: no Nomad agent runs here, and nothing listens on the loopback port the
tests name."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run_pipeline

PIPELINE = """\
pipeline: refused
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt"}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
deploy:
  nomad: {datacenters: ["*"], driver: raw_exec}
"""


@pytest.fixture
def refused_nomad(monkeypatch: pytest.MonkeyPatch, clean_nomad_env: None) -> Iterator[str]:
    """NOMAD_ADDR naming a loopback port that is bound but not listening: every connection to
    it is refused, and no other process can take the port while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("NOMAD_ADDR", address)
        yield address


def _pipeline(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "files" / f"{name}.txt").write_text(f"{name}\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    return file


def _runs(file: Path) -> list[dict]:
    listed = run_pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


def _failed_deploy(file: Path, address: str, *options: str) -> None:
    deployed = run_pipeline("deploy", str(file), "--executor", "nomad", *options, cwd=file.parent)
    assert deployed.returncode == 1, deployed.stdout + deployed.stderr
    assert "Traceback" not in deployed.stderr
    error = deployed.stderr.splitlines()[-1]
    assert error.startswith(f"error: cannot reach Nomad at {address}"), deployed.stderr


def test_refused_connection_no_nomad_agent_leaves_the_complete_run_and_its_counts(
    tmp_path: Path, refused_nomad: str
):
    file = _pipeline(tmp_path)
    ran = run_pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    (before,) = _runs(file)
    assert before["state"] == "complete"
    inputs = len(list((tmp_path / "files").glob("*.txt")))
    assert before["counts"]["sink"]["processed"] == inputs

    for _ in range(2):  # each failed deploy once re-marked the run failed and added its counts
        _failed_deploy(file, refused_nomad)

    (after,) = _runs(file)
    # the whole record as it was: state, counts, and who ran it, when it ended and why
    assert after == before


def test_refused_connection_no_nomad_agent_ends_a_fresh_run_failed_counting_nothing(
    tmp_path: Path, refused_nomad: str
):
    """A new run (`--fresh`) the failed deploy began ends `failed`; it ran nothing, so it
    counts nothing, though the workers' last records (of the run before) are still there."""
    file = _pipeline(tmp_path)
    ran = run_pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    (before,) = _runs(file)

    _failed_deploy(file, refused_nomad, "--fresh")

    r1, r2 = _runs(file)
    assert (r1["state"], r1["counts"]) == (before["state"], before["counts"])
    assert r2["state"] == "failed"
    assert [c["processed"] for c in r2["counts"].values() if c["processed"]] == []
    assert "cannot reach Nomad" in r2["message"]
