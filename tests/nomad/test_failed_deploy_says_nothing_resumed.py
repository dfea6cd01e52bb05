"""A `pipeline deploy` that fails resumed nothing, so it says nothing of resuming (or starting)
a run: only its one-sentence error. Said before the submission, "resuming run r1 of pipeline
... (unchanged)" followed by the error was false on every retry. A deploy that succeeds says
which run it goes on with. Real `pipeline` processes: against a refused connection (no Nomad
agent runs here; nothing listens on the loopback port), then against the loopback Nomad double.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_nomad import JOB_ID, FakeNomad

from helpers import run_pipeline

PIPELINE = f"""\
pipeline: {JOB_ID}
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt"}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  nomad: {{datacenters: ["*"], driver: raw_exec}}
"""


def deployed_file(tmp_path: Path) -> Path:
    """`PIPELINE` with one input file, deployed (`pipeline deploy`, exit 0) from `tmp_path`:
    its pipeline file."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    deployed = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    return file


@pytest.fixture
def refused_nomad(monkeypatch: pytest.MonkeyPatch, clean_nomad_env: None) -> Iterator[str]:
    """NOMAD_ADDR naming a loopback port that is bound but not listening: every connection to
    it is refused, and no other process can take the port while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("NOMAD_ADDR", address)
        yield address


def _ran(tmp_path: Path) -> Path:
    """The pipeline file after a complete `pipeline run`: its run r1 can be resumed."""
    (tmp_path / "files").mkdir()
    for name in ("a", "b"):
        (tmp_path / "files" / f"{name}.txt").write_text(f"{name}\n")
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(PIPELINE)
    ran = run_pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    return file


def _runs(file: Path) -> list[dict]:
    listed = run_pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


@pytest.mark.parametrize("options", [(), ("--fresh",)], ids=["resumed", "fresh"])
def test_refused_connection_a_failed_deploy_says_only_its_error(
    tmp_path: Path, refused_nomad: str, options: tuple[str, ...]
):
    file = _ran(tmp_path)
    for _ in range(2):  # the second deploy finds r1 as the first left it, and says the same
        done = run_pipeline("deploy", str(file), *options, cwd=tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
        *warnings, error = done.stderr.splitlines()
        assert error.startswith(f"error: cannot reach Nomad at {refused_nomad}"), done.stderr
        # the file's warnings (its embedded store on a cluster) and nothing said of a run
        assert all(w.startswith("warning: ") for w in warnings), done.stderr
        assert "run r" not in done.stderr, done.stderr
    # nothing ran: no new session of r1 (a --fresh run ended failed, as it says in its record)
    assert _runs(file)[0]["sessions"] == 1


def test_contract_nomad_api_a_deploy_that_succeeds_says_it_resumes_the_run(
    tmp_path: Path, nomad_env: FakeNomad
):
    file = _ran(tmp_path)
    done = run_pipeline("deploy", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming run r1 of pipeline {JOB_ID} (unchanged)" in done.stdout, done.stdout
    assert len(nomad_env.calls("POST", "/v1/jobs")) == 1
    assert _runs(file)[0]["sessions"] == 2
