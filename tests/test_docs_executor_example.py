"""The executor plugin shown in docs/executors.md (docs/examples/executor-plugin) installs as a
third-party distribution and runs the page's pipeline (docs/examples/executor-demo) end to end
through the commands the page documents: `deploy`, `status`, `logs`, `stop`, `runs`.

The page is what a facility writes its own executor from; these tests keep its example working
against the real commands (the run record, `settle`, the refusals), not against a mock.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.sdk.executors import pid_alive
from asapo_pipelines.testing.distributions import install

from helpers import run_pipeline, wait_for

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
PLUGIN = EXAMPLES / "executor-plugin"
DEMO = EXAMPLES / "executor-demo"
FILE = "procs-demo.pipeline.yaml"
#: generous for a loaded machine; the whole run takes a few seconds on a quiet one
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example plugin pip-installed into a folder of its own, put on the path of every
    `pipeline` command (and so of the workers the executor starts)."""
    site = tmp_path_factory.mktemp("site")
    install([PLUGIN], site)
    return {"PYTHONPATH": str(site), "ASAPO_PIPELINES_STRICT": "1"}


def _demo(tmp_path: Path, *, watch: bool = False) -> Path:
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    if watch:  # a source that watches its folder: a service, which runs until stopped
        file = folder / FILE
        text = file.read_text()
        assert 'pattern: "*.txt"}' in text  # the page's file, changed here in one place
        file.write_text(text.replace('pattern: "*.txt"}', 'pattern: "*.txt", watch: true}'))
    return folder


def _pipeline(folder: Path, env: dict[str, str], *args: str) -> Any:
    return run_pipeline(*args, env=env, cwd=folder, timeout=TIMEOUT)


def _status(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    done = _pipeline(folder, env, "status", FILE, "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((folder / ".procs").rglob("*.log")))


def _lines(folder: Path) -> int:
    results = folder / "results" / "files.jsonl"
    return len(results.read_text().splitlines()) if results.exists() else 0


def _run(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    done = _pipeline(folder, env, "runs", FILE, "--json")
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    return dict(run)


def test_the_documented_executor_runs_a_batch_pipeline_to_its_end(tmp_path, env):
    folder = _demo(tmp_path)
    deployed = _pipeline(folder, env, "deploy", FILE)
    assert deployed.returncode == 0, deployed.stderr
    assert "with the procs executor: 4 worker(s) deployed" in deployed.stdout

    # the workers' exit codes, which the executor's shell writes, say when they have all
    # ended: read here rather than by a `pipeline status` each time round (a second each on
    # a loaded machine); `status` is then asked once, and must say the same
    def exits() -> list[str] | None:
        found = [p.read_text() for p in (folder / ".procs").rglob("*.exit")]
        assert all(code.strip() in ("", "0") for code in found), _logs(folder)
        return found if len(found) == 4 and all(c.strip() for c in found) else None

    wait_for(exits, TIMEOUT, "the four workers to end")
    # the shell that wrote an exit code may not have ended yet: the example's status calls a
    # live pid running, so it is asked again until no worker's shell is left
    state = wait_for(
        lambda: (s := _status(folder, env))["state"] != "running" and s,
        TIMEOUT,
        "status to see the workers' shells end",
    )
    assert state["state"] == "complete", f"{state}\n{_logs(folder)}"
    # one instance per unit and replica of the file (`pass` has two replicas)
    assert sorted((i["unit"], i["replica"], i["state"]) for i in state["instances"]) == [
        ("files", 0, "complete"),
        ("pass", 0, "complete"),
        ("pass", 1, "complete"),
        ("sink", 0, "complete"),
    ]
    assert _lines(folder) == 3
    # `status` saw the deployment complete and ended its run so (`settle`)
    run = _run(folder, env)
    assert (run["id"], run["state"], run["executor"]) == ("r1", "complete", "procs")

    logs = _pipeline(folder, env, "logs", FILE, "sink")
    assert logs.returncode == 0, logs.stderr
    assert "sink finished: 3 received, 3 processed" in logs.stdout
    other = _pipeline(folder, env, "logs", FILE, "pass", "--replica", "1")
    assert other.returncode == 0, other.stderr
    assert "pass[1]" in other.stdout

    stopped = _pipeline(folder, env, "stop", FILE)
    assert stopped.returncode == 0, stopped.stderr
    assert "nothing was running" in stopped.stdout
    assert _run(folder, env)["state"] == "complete"  # a complete run stays complete


def test_the_documented_executor_stops_a_service_and_refuses_a_second_deploy(tmp_path, env):
    folder = _demo(tmp_path, watch=True)
    deployed = _pipeline(folder, env, "deploy", FILE)
    assert deployed.returncode == 0, deployed.stderr
    try:
        wait_for(lambda: _lines(folder) == 3, TIMEOUT, "the three files in the results")
        state = _status(folder, env)
        assert state["state"] == "running", f"{state}\n{_logs(folder)}"
        pids = [int(i["task_id"]) for i in state["instances"]]

        again = _pipeline(folder, env, "deploy", FILE)
        assert again.returncode == 1
        assert "runs already with procs" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        stopped = _pipeline(folder, env, "stop", FILE)
    assert stopped.returncode == 0, stopped.stderr
    assert "4 worker(s) stopped" in stopped.stdout
    # `stop` returns once the workers have drained and exited
    assert not [pid for pid in pids if pid_alive(pid)]
    state = _status(folder, env)
    assert state["state"] == "stopped"
    assert {i["state"] for i in state["instances"]} == {"stopped"}
    assert _run(folder, env)["state"] == "stopped"
    assert _lines(folder) == 3


def test_a_failed_deployments_run_says_its_failed_unit_after_a_colon(tmp_path, env):
    """The run of a deployment that failed on its own (`settle`) says each failed unit as its
    executor details it, after a colon: in brackets, the detail of an executor that brackets
    its own words ended in a doubled bracket (the Slurm executor's worker errors)."""
    folder = _demo(tmp_path)
    (folder / "results").write_text("a file where the sink's folder should be\n")
    deployed = _pipeline(folder, env, "deploy", FILE)
    assert deployed.returncode == 0, deployed.stderr
    state = wait_for(
        lambda: (s := _status(folder, env))["state"] != "running" and s,
        TIMEOUT,
        "status to see the workers end",
    )
    assert state["state"] == "failed", f"{state}\n{_logs(folder)}"
    shown = _pipeline(folder, env, "runs", FILE)
    assert shown.returncode == 0, shown.stderr
    _, _, said = shown.stdout.partition("\nr1 failed: ")
    assert " ".join(said.split()) == (
        "the procs deployment procs-demo ended failed: sink replica 0: exit code 78"
    ), shown.stdout


def test_the_executor_page_shows_the_example_files_where_github_shows_them():
    """GitHub shows a `--8<--` include line as it is: docs/executors.md said `--8<-- "docs/
    examples/executor-plugin/acme_procs/plugin.py"` where the code belonged. It holds each
    file's text now, which tests/test_docs_tested.py keeps the same as the file."""
    import re

    page = (EXAMPLES.parent / "executors.md").read_text(encoding="utf-8")
    assert "--8<--" not in page
    shown = re.findall(r"^<!-- docs-test: copy, (\S+) -->$", page, re.M)
    files = [
        PLUGIN / "acme_procs" / "plugin.py",
        PLUGIN / "pyproject.toml",
        PLUGIN / "acme_procs" / "executor.py",
        DEMO / FILE,
    ]
    root = EXAMPLES.parents[1]
    assert shown == [str(f.relative_to(root)) for f in files]
