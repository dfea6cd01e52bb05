"""Params and config models a pipeline file cannot be checked against, as a plugin's author and
its users meet them: real out-of-tree plugin distributions pip-installed, `pipeline` run.

A params model that is a plain `pydantic.BaseModel` (unknown keys silently ignored) or a
transport config that does not forbid unknown keys would let a typo in a pipeline file pass:
the plugin is reported broken instead. A unit whose params have no JSON Schema (a `Callable`
field) is left out of the editor schema with a warning, and `show-unit` and `validate` say so
in one sentence, instead of every plugin's editor schema failing with an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

LOOSE_PLUGIN = """
from pydantic import BaseModel
from asapo_pipelines.sdk import Params, hookimpl


class ScaleParams(BaseModel):
    factor: int = 2


class ShiftParams(Params):
    offset: int = 0


@hookimpl
def register_units(register):
    for name, params in (("loose.scale", ScaleParams), ("loose.shift", ShiftParams)):
        register({
            "name": name,
            "kind": "processor",
            "summary": "Changes every value.",
            "inputs": [{"name": "values"}],
            "outputs": [{"name": "changed"}],
            "params": params,
            "runtime": "loose_units.rt:Change",
        })
"""

LOOSE_TRANSPORT = """
from pydantic import BaseModel
from asapo_pipelines.sdk import TransportDescriptor, hookimpl


class LaxConfig(BaseModel):
    directory: str = "lax-store"


@hookimpl
def register_transports(register):
    register(TransportDescriptor(
        name="lax",
        summary="A store whose section ignores unknown keys.",
        config=LaxConfig,
        runtime="loose_transport.rt:open_lax",
    ))
"""

HOOKED_PLUGIN = """
from typing import Callable
from asapo_pipelines.sdk import Params, hookimpl


class HookParams(Params):
    hook: Callable[[int], int] | None = None
    factor: int = 3


@hookimpl
def register_units(register):
    register({
        "name": "hooked.apply",
        "kind": "processor",
        "summary": "Applies a hook to every value.",
        "inputs": [{"name": "values"}],
        "outputs": [{"name": "applied"}],
        "params": HookParams,
        "runtime": "hooked_units.rt:Apply",
    })
"""

PROJECTS = [
    PluginProject(
        "loose-units", "0.1.0", {"plugin.py": LOOSE_PLUGIN}, {"loose": "loose_units.plugin"}
    ),
    PluginProject(
        "loose-transport",
        "0.2.0",
        {"plugin.py": LOOSE_TRANSPORT},
        {"lax": "loose_transport.plugin"},
    ),
    PluginProject(
        "hooked-units", "0.3.0", {"plugin.py": HOOKED_PLUGIN}, {"hooked": "hooked_units.plugin"}
    ),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("params-src")
    target = tmp_path_factory.mktemp("params-site")
    install([p.write(root) for p in PROJECTS], target)
    return target


@pytest.fixture
def env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def _no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr


def _plugins(env: dict[str, str]) -> dict[str, dict]:
    result = run_pipeline("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}


def _pipeline_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "typo.pipeline.yaml"
    path.write_text(text)
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return path


UNIT_TYPO = """\
pipeline: typo
units:
  files:
    unit: core.files
    params: {directory: inbox}
    outputs: {files: raw}
  change:
    unit: %s
    params: {xx: 5}
    inputs: {values: raw}
    outputs: {%s: out}
"""


def test_plain_basemodel_params_make_the_unit_broken_and_the_typo_an_error(env, tmp_path):
    loose = _plugins(env)["loose-units"]
    assert loose["status"] == "broken"
    # the reason names the unit and what to subclass; its sibling unit still loads
    assert any("loose.scale" in e and "asapo_pipelines.sdk.Params" in e for e in loose["errors"]), (
        loose["errors"]
    )
    assert loose["units"] == ["loose.shift"]

    typo = _pipeline_file(tmp_path, UNIT_TYPO % ("loose.scale", "changed"))
    result = run_pipeline("validate", str(typo), env=env)
    _no_traceback(result)
    assert result.returncode != 0, result.stdout + result.stderr
    # the same typo on the healthy sibling is an error too, at its line
    typo = _pipeline_file(tmp_path, UNIT_TYPO % ("loose.shift", "changed"))
    result = run_pipeline("validate", str(typo), env=env)
    assert result.returncode != 0
    assert "xx" in result.stdout + result.stderr


def test_a_config_model_that_ignores_unknown_keys_makes_its_transport_broken(env, tmp_path):
    lax = _plugins(env)["loose-transport"]
    assert lax["status"] == "broken"
    assert lax["transports"] == []
    assert any("LaxConfig" in e and "extra='forbid'" in e for e in lax["errors"]), lax["errors"]

    typo = _pipeline_file(
        tmp_path,
        "pipeline: typo\ntransport:\n  lax: {directoy: elsewhere}\n"
        + (UNIT_TYPO % ("core.identity", "output")).split("\n", 1)[1].replace("{xx: 5}", "{}"),
    )
    result = run_pipeline("validate", str(typo), env=env)
    _no_traceback(result)
    assert result.returncode != 0, result.stdout + result.stderr


def test_strict_plugins_reports_a_unit_whose_params_have_no_json_schema(env):
    result = run_pipeline("plugins", "--strict", "--json", env=env)
    _no_traceback(result)
    assert result.returncode == 1
    hooked = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}["hooked-units"]
    assert hooked["status"] == "broken"
    assert any("hooked.apply" in e and "hook" in e for e in hooked["errors"]), hooked["errors"]


def _schema_warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "hooked.apply" in line]


def test_schema_leaves_out_a_unit_without_json_schema_and_says_so(env, tmp_path):
    result = run_pipeline("schema", env=env)
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    units = json.loads(result.stdout)["properties"]["units"]["additionalProperties"]
    names = units["properties"]["unit"]["enum"]
    assert "hooked.apply" not in names
    assert {"core.identity", "loose.shift"} <= set(names)
    (warning,) = _schema_warnings(result)
    assert "hooked-units" in warning

    out = tmp_path / "schemas"
    result = run_pipeline("schema", "-o", str(out), env=env)
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert (out / "units" / "loose.shift.schema.json").is_file()
    assert not (out / "units" / "hooked.apply.schema.json").exists()
    assert run_pipeline("schema", "--check", "-o", str(out), env=env).returncode == 0

    # under the strict environment of CI the same unit is an error
    strict = run_pipeline("schema", env={**env, "ASAPO_PIPELINES_STRICT": "1"})
    _no_traceback(strict)
    assert strict.returncode == 1
    assert "hooked.apply" in strict.stderr


@pytest.mark.parametrize(
    "args", [("show-unit", "hooked.apply"), ("show-unit", "--json", "hooked.apply")]
)
def test_show_unit_of_a_unit_without_json_schema_is_one_sentence(env, args):
    result = run_pipeline(*args, env=env)
    _no_traceback(result)
    assert result.returncode != 0
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "hooked.apply" in error
    assert "field hook" in error


def test_validate_of_a_file_using_a_unit_without_json_schema_is_one_sentence(env, tmp_path):
    path = _pipeline_file(
        tmp_path, (UNIT_TYPO % ("hooked.apply", "applied")).replace("{xx: 5}", "{factor: 4}")
    )
    result = run_pipeline("validate", str(path), env=env)
    _no_traceback(result)
    assert result.returncode != 0
    assert "hooked.apply" in result.stdout + result.stderr
