"""An out-of-tree executor's name is its descriptor's, as users see it through the real CLI: a
runtime class that sets no `name` plans and deploys with its validated ``deploy:`` section, and
one whose `name` differs from its descriptor's is refused in one sentence (it would otherwise
silently drop that section and send the job to the default queue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

PLUGIN = """
from pydantic import BaseModel, ConfigDict

from asapo_pipelines.descriptor import ExecutorDescriptor
from asapo_pipelines.sdk import hookimpl


class QueueConfig(BaseModel):
    \"\"\"Where the jobs go.\"\"\"

    model_config = ConfigDict(extra="forbid")

    queue: str = "default"


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(
        name="printer", summary="Prints its jobs (no name on the class).",
        config=QueueConfig, runtime="acme_printer.runtime:Printer",
    ))
    register(ExecutorDescriptor(
        name="misnamed", summary="Prints its jobs (another name on the class).",
        config=QueueConfig, runtime="acme_printer.runtime:Misnamed",
    ))
"""

#: What the docs lead an author to write: no `name` on the class.
RUNTIME = """
from asapo_pipelines.executor import Executor, ExecutorStatus

from acme_printer.plugin import QueueConfig


class Printer(Executor):
    @property
    def queue(self):
        return (self.config or QueueConfig()).queue

    def plan(self):
        return {"executor": self.name, "queue": self.queue, "units": list(self.pipeline.units)}

    def deploy(self, *, wait):
        return {"status": "submitted", "message": f"queued on {self.queue}"}

    def start(self, *, wait):
        return self.deploy(wait=wait)

    def stop(self, *, purge=False):
        return {"status": "stopped"}

    def status(self):
        return ExecutorStatus(executor=self.name, deployment=self.pipeline.name, state="queued",
                              extra={"queue": self.queue})

    def logs(self, unit, *, replica=None, follow=False, stderr=False):
        return iter(())


class Misnamed(Printer):
    name = "print"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("printer-src")
    site = tmp_path_factory.mktemp("printer-site")
    project = PluginProject(
        "acme-printer",
        "0.1.0",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"acme-printer": "acme_printer.plugin"},
    )
    install([project.write(root)], site)
    return {"PYTHONPATH": str(site)}


def _pipeline(tmp_path: Path, executor: str, queue: str) -> Path:
    file = tmp_path / "printed.pipeline.yaml"
    file.write_text(
        f"""\
pipeline: printed
units:
  files:
    unit: core.files
    params: {{directory: inbox}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out/all.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  {executor}: {{queue: {queue}}}
"""
    )
    return file


def test_an_executor_without_a_name_gets_its_deploy_section(env, tmp_path):
    queue = "fast"
    file = _pipeline(tmp_path, "printer", queue)
    validated = run_pipeline("validate", str(file), env=env)
    assert validated.returncode == 0, validated.stderr

    plan = run_pipeline("plan", str(file), env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout) == {
        "executor": "printer",
        "queue": queue,
        "units": ["files", "sink"],
    }

    deployed = run_pipeline("deploy", str(file), env=env, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    assert f"deployed pipeline printed with the printer executor: queued on {queue}" in (
        deployed.stdout
    )
    status = run_pipeline("status", str(file), "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["executor"], shown["extra"]["queue"]) == ("printer", queue)


def test_an_executor_whose_class_names_another_is_one_sentence(env, tmp_path):
    file = _pipeline(tmp_path, "misnamed", "fast")
    # the file is valid: its deploy section is the descriptor's
    assert run_pipeline("validate", str(file), env=env).returncode == 0
    for command in ("plan", "deploy"):
        result = run_pipeline(command, str(file), env=env, cwd=tmp_path)
        assert result.returncode != 0, result.stdout
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: the executor misnamed (acme-printer) is a broken plugin"), (
            line
        )
        assert "'print'" in line, line
        assert "'misnamed'" in line, line
