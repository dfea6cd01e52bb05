"""A unit whose runtime module is not installed is found by `pipeline validate` (P207, at the
unit's line) and refused by `pipeline run` before any worker starts, without importing any
runtime: a real plugin distribution, pip-installed, with the typo a first unit's author makes
(`myxas.edgejump` for the module `myxas.edge_jump`) beside a correct unit whose runtime is
heavy (its package and its module each leave a mark, and the module raises, when imported)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import Port, UnitDescriptor, hookimpl


@hookimpl
def register_units(register):
    register(UnitDescriptor(
        name="myxas.edge-jump",
        kind="processor",
        summary="Measures the edge jump.",
        inputs=(Port(name="spectra"),),
        outputs=(Port(name="jumps"),),
        runtime="myxas.edgejump:EdgeJump",  # the module is myxas.edge_jump
    ))
    register(UnitDescriptor(
        name="myxas.fit",
        kind="processor",
        summary="Fits the spectra with a heavy library.",
        inputs=(Port(name="spectra"),),
        outputs=(Port(name="fits"),),
        runtime="myxas.heavy.fit:Fit",
    ))
"""

EDGE_JUMP = """
from asapo_pipelines.sdk import Processor


class EdgeJump(Processor):
    def process(self, message):
        return None
"""

# what importing a heavy runtime does, as far as this test can see: a mark, then a failure
MARK_AND_RAISE = """
import json
import os
with open(os.environ["MYXAS_IMPORT_MARK"], "a") as mark:
    mark.write(__name__ + "\\n")
raise ImportError("importing {name} takes 2 s and 200 MB")
"""

SENTENCE = (
    "error P207 unit myxas.edge-jump cannot run: plugin myxas 0.1.0 names its runtime "
    "myxas.edgejump:EdgeJump, but there is no module myxas.edgejump (did you mean "
    "myxas.edge_jump?); fix the runtime in the plugin's unit descriptor, or install the "
    "package that provides myxas.edgejump"
)


def _units(*used: str) -> str:
    places = {"myxas.edge-jump": ("jump", "jumps"), "myxas.fit": ("fit", "fits")}
    lines = ["pipeline: edge", "streams:", "  spectra: {external: true}"]
    # the outputs are read elsewhere (no P307)
    lines += [f"  {places[unit][1]}: {{}}" for unit in used]
    lines.append("units:")
    for unit in used:
        instance, port = places[unit]
        lines += [
            f"  {instance}:",
            f"    unit: {unit}",
            "    inputs: {spectra: spectra}",
            f"    outputs: {{{port}: {port}}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def myxas_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin distribution `myxas` installed into a directory for PYTHONPATH; its runtime
    `myxas.heavy.fit` sits in a subpackage whose `__init__` leaves a mark too."""
    src = tmp_path_factory.mktemp("myxas-src")
    project = PluginProject(
        "myxas",
        "0.1.0",
        modules={"plugin.py": PLUGIN, "edge_jump.py": EDGE_JUMP},
        entry_points={"myxas": "myxas.plugin"},
    ).write(src)
    heavy = project / "myxas" / "heavy"
    heavy.mkdir()
    (heavy / "__init__.py").write_text(MARK_AND_RAISE.format(name="myxas.heavy"))
    (heavy / "fit.py").write_text(MARK_AND_RAISE.format(name="myxas.heavy.fit"))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('packages = ["myxas"]', 'packages = ["myxas", "myxas.heavy"]')
    )
    site = tmp_path_factory.mktemp("myxas-site")
    install([project], site)
    assert (site / "myxas" / "heavy" / "fit.py").is_file()
    return site


@pytest.fixture
def env(myxas_site: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(myxas_site),
        "ASAPO_PIPELINES_PLUGINS": "myxas",
        "MYXAS_IMPORT_MARK": str(tmp_path / "imported"),
    }


def _imported(env: dict[str, str]) -> list[str]:
    mark = Path(env["MYXAS_IMPORT_MARK"])
    return mark.read_text().split() if mark.exists() else []


def test_validate_reports_a_runtime_module_that_is_not_installed(tmp_path, env) -> None:
    file = tmp_path / "edge.pipeline.yaml"
    file.write_text(_units("myxas.fit", "myxas.edge-jump"))
    result = run_pipeline("validate", file.name, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    # at the `unit:` of the instance that uses it (line 12, column 11: the value of its `unit:`)
    assert result.stdout == f"{file.name}:12:11: {SENTENCE}\n"
    assert result.stderr.strip() == f"{file.name}: invalid (1 error)"
    assert "Traceback" not in result.stderr
    assert _imported(env) == []  # the heavy runtime's package and module were only found


def test_a_runtime_that_is_installed_is_neither_reported_nor_imported(tmp_path, env) -> None:
    file = tmp_path / "fit.pipeline.yaml"
    file.write_text(_units("myxas.fit"))
    result = run_pipeline("validate", file.name, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert _imported(env) == []


def test_validate_of_standard_input_reports_it_too(tmp_path, env) -> None:
    result = run_pipeline(
        "validate", "--json", "-", env=env, cwd=tmp_path, input=_units("myxas.edge-jump")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"code": "P207"' in result.stdout


def test_run_refuses_it_before_starting_a_worker(tmp_path, env) -> None:
    file = tmp_path / "edge.pipeline.yaml"
    file.write_text(_units("myxas.fit", "myxas.edge-jump"))
    result = run_pipeline("run", file.name, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{file.name}:12:11: {SENTENCE}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert _imported(env) == []
    # nothing was started or recorded: no data directory next to the file
    assert os.listdir(tmp_path) == [file.name]


def test_plugins_lists_it_with_a_warning_and_strict_fails(tmp_path, env) -> None:
    """Plain `pipeline plugins` showed the plugin "ok" while its unit cannot run: it is now
    marked with the sentence --strict fails with, from the listing cache too, and the heavy
    runtime beside it is still only found."""
    warning = (
        "unit myxas.edge-jump: its runtime myxas.edgejump:EdgeJump cannot be found: there is "
        "no module myxas.edgejump (did you mean myxas.edge_jump?)"
    )
    env = {**env, "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    for _ in ("cold", "cached"):
        text = run_pipeline("plugins", env=env, cwd=tmp_path)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert "myxas  myxas 0.1.0  ok, 1 warning" in lines
        assert f"  ? {warning}" in lines
        listed = run_pipeline("plugins", "--json", env=env, cwd=tmp_path)
        records = {p["distribution"]: p for p in json.loads(listed.stdout)["plugins"]}
        assert records["myxas"]["status"] == "ok"
        assert records["myxas"]["warnings"] == [warning]
        assert records["asapo-pipelines"]["warnings"] == []
    assert _imported(env) == []
    strict = run_pipeline("plugins", "--strict", "--json", env=env, cwd=tmp_path)
    assert strict.returncode == 1
    records = {p["distribution"]: p for p in json.loads(strict.stdout)["plugins"]}
    assert records["myxas"]["errors"] == [warning]
