"""`pipeline run` asks the queue server for its allowed plans before it starts anything. Before,
a typo in the agent's plan name (or a plan the server does not allow) was found only when the
bridge's first suggestion was refused, at night; a server that cannot be asked at start is said,
and the run goes on as before (the bridge asks it again with each suggestion)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bluesky_services import free_port, start_queue_server, stop

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of `needle` in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the file")


@pytest.fixture
def p65(tmp_path: Path, queue_server) -> Path:
    """The example beside a copy of its data, pointed at the test's queue server, with the
    agent's plan name misspelt."""
    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control)
    assert "plan_name: xas_scan}" in text
    path = tmp_path / EXAMPLE.name
    path.write_text(text.replace("plan_name: xas_scan}", "plan_name: xas_scna}"))
    return path


def test_a_plan_the_server_does_not_allow_refuses_the_run_before_it_starts(p65, queue_server):
    cwd = p65.parent
    line, column = _position(p65.read_text(), "xas_scna")
    said = (
        f"error: {p65.name}:{line}:{column}: the queue server at {queue_server.control} does not "
        "allow plan xas_scna (it allows scan, xas_scan); did you mean xas_scan?"
    )
    for detach in ([], ["--detach"]):
        run = pipeline("run", p65.name, *detach, cwd=cwd)
        assert (run.returncode, run.stderr.strip(), run.stdout) == (1, said, ""), detach
    # nothing was started or recorded: no run, no worker, no suggestion
    runs = pipeline("runs", p65.name, "--json", cwd=cwd)
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout)["runs"] == []
    assert not (cwd / ".pipeline-data" / "runs").exists()
    assert not (cwd / ".pipeline-data" / "suggestions.sqlite").exists()
    assert queue_server.suggestion_items() == {"queue": [], "running": [], "history": []}

    # the same file with the name put right for this run: checked as it runs, and it runs
    fixed = pipeline("run", p65.name, "--set", "advisor.plan_name=xas_scan", cwd=cwd)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "xas_scna" not in fixed.stderr


def test_a_cluster_deploy_is_refused_before_anything_is_submitted(p65, queue_server):
    """`pipeline deploy` to Nomad asks the queue server as `pipeline run` does, before it
    records a run or talks to Nomad: the Nomad address here answers nothing, so only a
    refusal made before submitting gives the plan's sentence."""
    import os

    cwd = p65.parent
    assert "\ndeploy:\n  nomad:" in p65.read_text()
    line, column = _position(p65.read_text(), "xas_scna")
    said = (
        f"error: {p65.name}:{line}:{column}: the queue server at {queue_server.control} does not "
        "allow plan xas_scna (it allows scan, xas_scan); did you mean xas_scan?"
    )
    env = {**os.environ, "NOMAD_ADDR": f"http://127.0.0.1:{free_port()}"}
    deploy = subprocess.run(
        [*PIPELINE, "deploy", p65.name],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (deploy.returncode, deploy.stderr.strip(), deploy.stdout) == (1, said, "")
    runs = pipeline("runs", p65.name, "--json", cwd=cwd)
    assert json.loads(runs.stdout)["runs"] == []


def test_a_queue_server_that_cannot_be_asked_at_start_is_said_and_the_run_goes_on(p65):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    text = p65.read_text().replace("plan_name: xas_scna}", "plan_name: xas_scan}")
    p65.write_text(_pointed_at(text, address))
    line, column = _position(p65.read_text(), address)
    run = pipeline("run", p65.name, cwd=p65.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        f"warning: {p65.name}:{line}:{column}: plans not checked: the queue server at {address} "
        "did not answer a plans_allowed request within 1 s; is start-re-manager running there? "
        "(starting anyway)"
    ) in run.stderr.splitlines()
    # as before: the agent's suggestions wait in the inbox (approve mode) for a person
    listed = pipeline("suggestions", p65.name, "--json", cwd=p65.parent)
    assert listed.returncode == 0, listed.stderr
    assert {e["state"] for e in json.loads(listed.stdout) if e["action"] == "more_scans"} == {
        "pending"
    }


def _pointed_at(text: str, address: str) -> str:
    """The bridge of `text` asking `address`, with a short deadline per answer."""
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("control_address:"):
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}control_address: {address}\n{indent}timeout: 1"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_a_queue_server_without_a_plan_list_yet_is_not_taken_for_refusing_every_plan(
    p65, tmp_path, monkeypatch
):
    """A server whose environment was never opened allows no plans yet (it has no plan list):
    that says nothing about the names, so the run is not refused; it is said and goes on."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    # the test's own server, its environment left closed (the fixture's opens it)
    monkeypatch.setattr(REManagerAPI, "environment_open", lambda self, **kw: {"success": True})
    monkeypatch.setattr(REManagerAPI, "wait_for_idle", lambda self, **kw: None)
    server = start_queue_server(tmp_path / "closed-server")
    try:
        text = p65.read_text().replace("plan_name: xas_scna}", "plan_name: xas_scan}")
        p65.write_text(_pointed_at(text, server.control))
        line, column = _position(p65.read_text(), server.control)
        run = pipeline("run", p65.name, cwd=p65.parent)
        assert run.returncode == 0, run.stderr[-3000:]
        assert (
            f"warning: {p65.name}:{line}:{column}: plans not checked: the queue server at "
            f"{server.control} allows user group primary no plans yet (was its environment "
            "ever opened?) (starting anyway)"
        ) in run.stderr.splitlines()
    finally:
        for proc in reversed(server.procs):
            stop(proc)
