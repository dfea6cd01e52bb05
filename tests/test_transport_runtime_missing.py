"""A plugin's transport or executor whose runtime names a module that is not there (a typo in
its import string): `pipeline validate` called a file using it valid, and `pipeline run` (or
`deploy`) then stopped at once ("cannot be loaded from ..."). A unit's runtime is checked so
(P207); the transport's and the executors' now are too, at their keys in the file, and
`pipeline run` refuses before it starts anything. Real plugin distribution, real `pipeline`
subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

PLUGIN = """
from pydantic import BaseModel, ConfigDict
from asapo_pipelines.sdk import ExecutorDescriptor, TransportDescriptor, hookimpl


class BusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str


@hookimpl
def register_transports(register):
    register(TransportDescriptor(
        name="typobus", summary="A bus whose runtime's module is misspelt.", config=BusConfig,
        runtime="asapo_typobus.transprot:open_bus",
    ))


class ExecConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@hookimpl
def register_executors(register):
    register(ExecutorDescriptor(
        name="typoexec", summary="An executor whose runtime's module is misspelt.",
        config=ExecConfig, runtime="asapo_typobus.executr:Exec",
    ))
"""

RUNTIME = """
def open_bus(options):
    raise RuntimeError("never reached: the descriptor names another module")
"""

SENTENCE = (
    "error P207 transport typobus cannot run: plugin asapo-typobus 1.0.0 names its runtime "
    "asapo_typobus.transprot:open_bus, but there is no module asapo_typobus.transprot (did you "
    "mean asapo_typobus.transport?); fix the runtime in the plugin's transport descriptor, or "
    "install the package that provides asapo_typobus.transprot"
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("typobus")
    project = PluginProject(
        "asapo-typobus",
        modules={"plugin.py": PLUGIN, "transport.py": RUNTIME, "executor.py": ""},
        entry_points={"typobus": "asapo_typobus.plugin"},
    ).write(root)
    install([project], root / "site")
    home = root / "home"
    (home / "files").mkdir(parents=True)
    (home / "files" / "a.txt").write_text("a")
    doc = {
        "pipeline": "typo",
        "transport": {"typobus": {"url": "bus://127.0.0.1:1"}},
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl"},
                "inputs": {"messages": "raw"},
            },
        },
    }
    (home / "typo.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return home, {"PYTHONPATH": str(root / "site")}


def test_validate_names_the_missing_module_at_the_transport_key(home) -> None:
    where, env = home
    done = run_pipeline("validate", "typo.pipeline.yaml", cwd=where, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"typo.pipeline.yaml:4:5: {SENTENCE}" in done.stdout.splitlines(), done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_validate_names_an_executor_s_missing_module_at_its_deploy_key(home) -> None:
    where, env = home
    doc = json.loads((where / "typo.pipeline.yaml").read_text())
    del doc["transport"]
    doc["deploy"] = {"typoexec": {}}
    (where / "exec.pipeline.yaml").write_text(json.dumps(doc))  # one line: 1:CCC
    done = run_pipeline("validate", "exec.pipeline.yaml", cwd=where, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    column = json.dumps(doc).index('"typoexec"') + 1
    sentence = (
        f"exec.pipeline.yaml:1:{column}: error P207 executor typoexec cannot run: plugin "
        "asapo-typobus 1.0.0 names its runtime asapo_typobus.executr:Exec, but there is no "
        "module asapo_typobus.executr (did you mean asapo_typobus.executor?); fix the runtime "
        "in the plugin's executor descriptor, or install the package that provides "
        "asapo_typobus.executr"
    )
    assert sentence in done.stdout.splitlines(), done.stdout


def test_run_refuses_before_it_starts_anything(home) -> None:
    where, env = home
    done = run_pipeline("run", "typo.pipeline.yaml", cwd=where, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert SENTENCE in said, said
    assert "starts" not in said, said
    assert "Traceback" not in said, said
    assert not (where / "out.jsonl").exists()
